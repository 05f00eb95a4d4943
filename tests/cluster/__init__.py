"""Tests of the cluster protocol and its embedded SQLite backend."""
