"""Errors the CLI raises itself, next to the cluster's `ApiError`s; `cdi.cli.main` prints either kind as
one `error: ...` line on stderr and exits non-zero.

    CliError            a usage or input problem found before or around a cluster call
    ├── ManifestProblem a manifest file that cannot be read or parsed (file, line, what is wrong)
    ├── WaitTimeout     a wait (`cdi wait`, `cdi delete --wait`) ran out of time
    └── AlreadyUploaded `cdi image-upload`: the target's upload had succeeded before this one's final chunk
                        (`cdi.cli.uploadclient` raises it; kept here so that catching it imports no HTTP client)
"""

from __future__ import annotations


class CliError(Exception):
    """A problem to report as `error: <message>` with exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManifestProblem(CliError):
    """A manifest source that cannot be read, or YAML that does not parse."""


class WaitTimeout(CliError):
    """The condition was not met before the timeout, worded as kubectl words it."""

    def __init__(self, resource: str, name: str) -> None:
        super().__init__(f"timed out waiting for the condition on {resource}/{name}")
        self.resource, self.name = resource, name


class AlreadyUploaded(CliError):
    """The proxy says the target's upload already succeeded, before this upload's final chunk went out."""
