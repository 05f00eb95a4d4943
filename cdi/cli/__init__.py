"""The `cdi` command line: kubectl-like access to the embedded control plane, plus `demo`."""
