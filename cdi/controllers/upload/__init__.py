"""The upload controller's pure parts: the upload server pod and Service for a PVC (`podspec`)."""
