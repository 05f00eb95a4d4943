"""The control plane of pycdi: API models, cross-process contracts, sizing rules, and (as they arrive)
the cluster backends, reconcile runtime, controllers and CLI. The data plane lives in `importer`."""
