"""Where the upload server for a PVC is: the seam between the proxy and whatever knows the cluster.

The proxy calls `UploadTargetResolver.resolve(namespace, pvc)` once per request (again every second
while it raises `UploadNotReady`, for up to 10 s, as upstream's `uploadReady` poll). A resolver
raises `NotAnUploadTarget` for answers that waiting cannot change; the proxy answers both with 503
and the message HTML-escaped, except `AlreadyUploaded` (the PVC's upload succeeded), which the
resumable endpoint answers with 409 and `X-Upload-Phase: Succeeded` so clients can tell it apart.
The message helpers below spell upstream's texts so every resolver uses the same words.

`ServiceDnsResolver` is upstream's addressing for Kubernetes (`https://cdi-upload-<pvc>.<ns>.svc`,
the Service's port 443): it cannot see readiness or content type, so a resolver backed by the
cluster API (the control plane provides one, for both the embedded and the Kubernetes backends) is
preferred wherever the proxy can read PVCs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cdi.contracts.upload_protocol import SERVICE_PORT, upload_service_name


@dataclass(frozen=True)
class UploadTarget:
    """The upload server to stream to.

    `url`: scheme, host and port, e.g. `https://127.1.0.7:8443`. `archive`: the PVC's content type is
    `archive`, so requests are rewritten to the archive endpoints (upstream). `server_hostname`: the
    name to verify the server certificate against when `url` holds an address the certificate does
    not name (None: the URL's host).
    """

    url: str
    archive: bool = False
    server_hostname: str | None = None


class ResolveError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadNotReady(ResolveError):
    """The upload server is not ready yet (pod starting); the proxy keeps asking for a while."""


class NotAnUploadTarget(ResolveError):
    """Uploading to this PVC cannot work (missing, not an upload target, finished, bad content type)."""


class AlreadyUploaded(NotAnUploadTarget):
    """The PVC's upload already succeeded: there is nothing left to upload to."""


class UploadTargetResolver(Protocol):
    async def resolve(self, namespace: str, pvc: str) -> UploadTarget: ...


def pvc_missing(pvc: str) -> NotAnUploadTarget:
    return NotAnUploadTarget(f"rejecting Upload Request for PVC {pvc} that doesn't exist")


def not_upload_target(pvc: str) -> NotAnUploadTarget:
    return NotAnUploadTarget(f"PVC {pvc} is not an upload target")


def already_finished(pvc: str) -> AlreadyUploaded:
    return AlreadyUploaded(f"rejecting Upload Request for PVC {pvc} that already finished uploading")


def prime_missing(pvc: str) -> UploadNotReady:
    return UploadNotReady(f"rejecting Upload Request for PVC {pvc}, PVC' wasn't created yet")


def invalid_content_type(pvc: str, content_type: str) -> NotAnUploadTarget:
    return NotAnUploadTarget(f"rejecting upload request for PVC {pvc} - upload content-type {content_type} is "
                             f"invalid")


def pod_not_ready(pvc: str) -> UploadNotReady:
    return UploadNotReady(f"upload server for PVC {pvc} is not ready")


class ServiceDnsResolver:
    """Upstream's URL for the upload Service in a Kubernetes cluster."""

    def __init__(self, port: int = SERVICE_PORT, domain: str = "svc") -> None:
        self._port = port
        self._domain = domain

    async def resolve(self, namespace: str, pvc: str) -> UploadTarget:
        return UploadTarget(f"https://{upload_service_name(pvc)}.{namespace}.{self._domain}:{self._port}")
