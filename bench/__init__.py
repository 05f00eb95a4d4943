"""The data-path benchmark (issue 6): run with `bash bench/run.sh`; not part of the test suite."""
