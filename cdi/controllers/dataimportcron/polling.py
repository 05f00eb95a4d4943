"""What every source poller shares: the `PollTarget` it is given, the `SourcePoller` protocol, and the
errors it raises. The HTTP(S) and S3 pollers live in `pollers`, the registry's in `registry`; both
import from here, so neither needs the other.

Errors, each with the reason the cron's Warning event shows and a retryable flag:

    PollError                 PollFailed              anything else (retryable)
    ├── SourceUnreachable     ImportSourceUnavailable connect/TLS error, HTTP status, S3 error
    ├── ImagePullFailed       ImagePullFailed         registry: unknown tag, denied, TLS
    ├── NoChangeValidator     NoChangeValidator       the server gives no ETag/Last-Modified (not retryable)
    └── UnsupportedSource     NotSupported            pullMethod: node, oci-archive, a source kind with no poller
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PollError(Exception):
    reason = "PollFailed"
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceUnreachable(PollError):
    reason = "ImportSourceUnavailable"


class ImagePullFailed(PollError):
    reason = "ImagePullFailed"


class NoChangeValidator(PollError):
    reason = "NoChangeValidator"
    retryable = False


class UnsupportedSource(PollError):
    reason = "NotSupported"
    retryable = False


@dataclass(frozen=True)
class PollTarget:
    """One source to poll, everything resolved: no cluster access is needed to poll it."""

    kind: str  # "registry", "http" or "s3"
    url: str
    access_key_id: str = ""
    secret_key: str = ""
    ca_certificates: tuple[str, ...] = ()  # PEM texts from the CA ConfigMap
    insecure: bool = False  # insecureSkipVerify, or a registry CDIConfig lists as insecure
    extra_headers: tuple[str, ...] = ()

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_key_id and self.secret_key)


class SourcePoller(Protocol):
    async def poll(self, target: PollTarget) -> str: ...
