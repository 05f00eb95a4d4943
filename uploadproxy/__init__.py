"""The external upload endpoint: validates upload tokens and streams request bodies to the right
upload server. Built by the upload issue; this package exists now so the layering contract
(`uploadproxy` never imports controllers) is enforced from the first commit."""
