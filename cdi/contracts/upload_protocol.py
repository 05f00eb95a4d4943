"""The upload data plane's cross-process contract, written once: endpoint paths, headers and query
parameters, the upload server's and proxy's environment variables, the client certificate name, the
result message, and upstream's naming of the per-PVC upload pod and Service.

Three parties speak it: the upload server (`importer.uploadserver`), the upload proxy (`uploadproxy`)
and the control plane (the upload pod builder in `cdi.controllers.upload.podspec` and the CLI client).
`importer` and `uploadproxy` may not import each other, so the contract lives here at the bottom.

Upstream's endpoints (`pkg/common/common.go`) are kept exactly; the resumable chunk endpoints are ours
(see `importer.uploadserver.resumable` for the protocol and its durability guarantee).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Mode(enum.StrEnum):
    SYNC = "sync"  # the whole pipeline runs inside the request
    ASYNC = "async"  # 200 once the body is in and validated; conversion finishes in the background
    CHUNK = "chunk"  # ours: offset-addressed chunks of one upload, resumable


class Body(enum.StrEnum):
    RAW = "raw"  # the request body is the image
    FORM = "form"  # multipart/form-data; the image is the part named `file`


@dataclass(frozen=True)
class Endpoint:
    path: str
    mode: Mode
    body: Body = Body.RAW
    archive: bool = False


HEALTHZ_PATH: Final = "/healthz"
FORM_FIELD: Final = "file"


def _versions(stem: str, mode: Mode, body: Body = Body.RAW, archive: bool = False) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(f"/{version}/{stem}", mode, body, archive) for version in ("v1beta1", "v1alpha1"))


UPLOAD_ENDPOINTS: Final = (
    *_versions("upload", Mode.SYNC),
    *_versions("upload-async", Mode.ASYNC),
    *_versions("upload-archive", Mode.SYNC, archive=True),
    *_versions("upload-form", Mode.SYNC, Body.FORM),
    *_versions("upload-form-async", Mode.ASYNC, Body.FORM),
)
CHUNK_PATH: Final = "/v1beta1/upload-chunk"
ARCHIVE_CHUNK_PATH: Final = "/v1beta1/upload-archive-chunk"
CHUNK_ENDPOINTS: Final = (Endpoint(CHUNK_PATH, Mode.CHUNK), Endpoint(ARCHIVE_CHUNK_PATH, Mode.CHUNK, archive=True))
SERVER_ENDPOINTS: Final = (*UPLOAD_ENDPOINTS, *CHUNK_ENDPOINTS)
# Upstream's proxy routes everything but the archive paths (it rewrites to them for archive PVCs).
PROXY_ENDPOINTS: Final = tuple(e for e in SERVER_ENDPOINTS if not e.archive)


def archive_path(path: str) -> str:
    """Where the proxy sends an upload for a PVC whose content type is `archive` (upstream's rewrite)."""
    if path.startswith(CHUNK_PATH):
        return ARCHIVE_CHUNK_PATH
    return "/v1alpha1/upload-archive" if "alpha" in path else "/v1beta1/upload-archive"


# Resumable protocol: query parameters and headers.
OFFSET_PARAM: Final = "offset"  # PUT: where this chunk starts in the upload stream
FINAL_PARAM: Final = "final"  # PUT: "true" on the last chunk (may be empty)
OFFSET_HEADER: Final = "X-Upload-Offset"  # response: the next offset the server expects
TOTAL_HEADER: Final = "X-Upload-Total"  # request, optional: the whole upload's length (for progress)
MAX_CHUNK_HEADER: Final = "X-Upload-Max-Chunk"  # response: the largest chunk the server accepts
MAX_CHUNK: Final = 1 << 30  # bytes are streamed, never held: this only bounds one request
# Ours, optional on any upload request: "<namespace>/<pvc>" the client means to upload to; the proxy
# refuses (401) a token issued for another PVC.
TARGET_HEADER: Final = "X-Cdi-Upload-Target"
# Ours, on the proxy's answer for a PVC whose upload already succeeded (its upload server is gone):
# `X-Upload-Phase: Succeeded`, with 409 on the resumable endpoint (upstream's endpoints keep upstream's
# 503). A client that sent the final chunk then knows its upload landed even if that reply was lost.
PHASE_HEADER: Final = "X-Upload-Phase"
PHASE_SUCCEEDED: Final = "Succeeded"
ALREADY_UPLOADED_STATUS: Final = 409

UPLOAD_COMPLETE: Final = "Upload Complete"
UPLOAD_CLIENT_NAME: Final = "client.upload-server.cdi.kubevirt.io"

# Upload server environment (upstream names; set by the upload pod builder).
LISTEN_ADDRESS: Final = "LISTEN_ADDRESS"
LISTEN_PORT: Final = "LISTEN_PORT"
DESTINATION: Final = "DESTINATION"
TLS_KEY_FILE: Final = "TLS_KEY_FILE"
TLS_CERT_FILE: Final = "TLS_CERT_FILE"
CLIENT_CERT_FILE: Final = "CLIENT_CERT_FILE"
CLIENT_NAME: Final = "CLIENT_NAME"
UPLOAD_IMAGE_SIZE: Final = "UPLOAD_IMAGE_SIZE"
TLS_CIPHERS: Final = "TLS_CIPHERS"
TLS_MIN_VERSION: Final = "TLS_MIN_VERSION"
DEADLINE: Final = "DEADLINE"
# Ours: plain HTTP for tests only, and how long a resumable upload waits for its next chunk.
INSECURE: Final = "CDI_UPLOAD_INSECURE"
RESUME_TIMEOUT: Final = "CDI_UPLOAD_RESUME_TIMEOUT"

DEFAULT_LISTEN_PORT: Final = 8443
SERVICE_PORT: Final = 443
TLS_DIR: Final = "/etc/tls"
DEFAULT_TLS_KEY: Final = f"{TLS_DIR}/tls.key"
DEFAULT_TLS_CERT: Final = f"{TLS_DIR}/tls.crt"
DEFAULT_CLIENT_CA: Final = f"{TLS_DIR}/ca.crt"
DEFAULT_DESTINATION: Final = "/data/disk.img"

# Upload proxy environment (upstream names, plus file-based variants that can be rotated in place).
SERVER_CERT_FILE: Final = "SERVER_CERT_FILE"
SERVER_KEY_FILE: Final = "SERVER_KEY_FILE"
UPLOAD_CLIENT_CERT_FILE: Final = "UPLOAD_CLIENT_CERT_FILE"
UPLOAD_CLIENT_KEY_FILE: Final = "UPLOAD_CLIENT_KEY_FILE"
UPLOAD_SERVER_CA_FILE: Final = "UPLOAD_SERVER_CA_FILE"  # ours; upstream reads a ConfigMap bundle
APISERVER_PUBLIC_KEY: Final = "APISERVER_PUBLIC_KEY"  # PEM content, as upstream
APISERVER_PUBLIC_KEY_FILE: Final = "APISERVER_PUBLIC_KEY_FILE"  # ours: a PEM bundle, reloaded on change
RELOAD_INTERVAL: Final = "CDI_UPLOADPROXY_RELOAD_INTERVAL"  # ours: seconds between credential file checks
DEFAULT_SERVER_CERT: Final = "/var/run/certs/cdi-uploadproxy-server-cert/tls.crt"
DEFAULT_SERVER_KEY: Final = "/var/run/certs/cdi-uploadproxy-server-cert/tls.key"
DEFAULT_UPLOAD_CLIENT_CERT: Final = "/var/run/certs/cdi-uploadserver-client-cert/tls.crt"
DEFAULT_UPLOAD_CLIENT_KEY: Final = "/var/run/certs/cdi-uploadserver-client-cert/tls.key"
DEFAULT_UPLOAD_SERVER_CA: Final = "/var/run/certs/cdi-uploadserver-signer-bundle/ca-bundle.crt"

_DNS_LABEL_MAX = 63
_DNS_SUBDOMAIN_MAX = 253


def fnv32a(text: str) -> str:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


def shortened_name(base: str, suffix: str, max_length: int) -> str:
    """openshift/library-go's `naming.GetName`, which upstream CDI uses: `<base>-<suffix>`, or, when
    that is too long, a truncated base plus an FNV-32a hash."""
    name = f"{base}-{suffix}"
    if len(name) <= max_length:
        return name
    base_length = max_length - 10 - len(suffix)
    if base_length < 0:
        prefix = base[:min(len(base), max(0, max_length - 9))]
        return f"{prefix}-{fnv32a(name)}"[:max_length]
    return f"{base[:base_length]}-{fnv32a(base)}-{suffix}"


def upload_resource_name(pvc_name: str) -> str:
    """The upload pod's name for a PVC: `cdi-upload-<pvc>` (shortened past 253 characters)."""
    return shortened_name("cdi-upload", pvc_name, _DNS_SUBDOMAIN_MAX)


def upload_service_name(pvc_name: str) -> str:
    """The upload Service's name: the pod's name as a DNS label (dots become dashes, at most 63)."""
    base = upload_resource_name(pvc_name).replace(".", "-")
    return base if len(base) <= _DNS_LABEL_MAX else shortened_name(base, "cdi", _DNS_LABEL_MAX)
