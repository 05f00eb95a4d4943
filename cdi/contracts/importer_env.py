"""The importer's environment-variable contract (upstream names) and the paths it uses by default.

The controller (`cdi.controllers`) writes these into importer pods; `importer.config` reads them.
The `CDI_*` path variables are ours: they let the same importer run outside a pod, where the volume,
scratch space and termination log are plain paths.

Scratch space differs from upstream on purpose: upstream's importer always looks at /scratch; ours
uses scratch space only where `CDI_SCRATCH_PATH` points, and our pod specs set it (to the mount path
/scratch, `DEFAULT_SCRATCH_DIR`) exactly when they mount a scratch claim. An absent or empty value
means "no scratch space", so a worker run as a local process never writes into a host's /scratch.
"""

from __future__ import annotations

from typing import Final

SOURCE: Final = "IMPORTER_SOURCE"
ENDPOINT: Final = "IMPORTER_ENDPOINT"
CONTENT_TYPE: Final = "IMPORTER_CONTENTTYPE"
IMAGE_SIZE: Final = "IMPORTER_IMAGE_SIZE"
OWNER_UID: Final = "OWNER_UID"
FILESYSTEM_OVERHEAD: Final = "FILESYSTEM_OVERHEAD"
PREALLOCATION: Final = "PREALLOCATION"
CACHE_MODE: Final = "CACHE_MODE"
INSECURE_TLS: Final = "INSECURE_TLS"
ACCESS_KEY_ID: Final = "IMPORTER_ACCESS_KEY_ID"
SECRET_KEY: Final = "IMPORTER_SECRET_KEY"
CERT_DIR: Final = "IMPORTER_CERT_DIR"
PROXY_CERT_DIR: Final = "IMPORTER_PROXY_CERT_DIR"
EXTRA_HEADER_PREFIX: Final = "IMPORTER_EXTRA_HEADER_"
CHECKSUM: Final = "IMPORTER_CHECKSUM"
PULL_METHOD: Final = "IMPORTER_PULL_METHOD"
REGISTRY_IMAGE_ARCHITECTURE: Final = "IMPORTER_REGISTRY_IMAGE_ARCHITECTURE"
READY_FILE: Final = "IMPORTER_READY_FILE"
DONE_FILE: Final = "IMPORTER_DONE_FILE"
HTTP_PROXY: Final = "http_proxy"
HTTPS_PROXY: Final = "https_proxy"
NO_PROXY: Final = "no_proxy"
# GCS: the credentials file (upstream mounts the source's Secret at /google), and the endpoint
# override Google's client libraries honour ("host:port" or a URL), ours too.
GOOGLE_APPLICATION_CREDENTIALS: Final = "GOOGLE_APPLICATION_CREDENTIALS"
STORAGE_EMULATOR_HOST: Final = "STORAGE_EMULATOR_HOST"

# Ours: where the volumes and the termination log are when not in a pod.
DATA_PATH: Final = "CDI_DATA_PATH"
SCRATCH_PATH: Final = "CDI_SCRATCH_PATH"
TERMINATION_LOG: Final = "CDI_TERMINATION_LOG"
EXTRA_HEADERS_DIR: Final = "CDI_EXTRA_HEADERS_DIR"
METRICS_ADDR: Final = "CDI_METRICS_ADDR"
PROGRESS_FILE: Final = "CDI_PROGRESS_FILE"
# Ours: how often an import records a checkpoint on its volume (a byte quantity, "0" for never;
# seconds), so a restarted importer continues where it was (`importer.checkpoint`).
CHECKPOINT_INTERVAL: Final = "CDI_CHECKPOINT_INTERVAL"
CHECKPOINT_SECONDS: Final = "CDI_CHECKPOINT_SECONDS"
DEFAULT_CHECKPOINT_INTERVAL: Final = 64 << 20
DEFAULT_CHECKPOINT_SECONDS: Final = 5.0

# Upstream's in-pod defaults.
DEFAULT_DATA_DIR: Final = "/data"
DEFAULT_BLOCK_PATH: Final = "/dev/cdi-block-volume"
DEFAULT_SCRATCH_DIR: Final = "/scratch"  # where pods mount scratch; read only via SCRATCH_PATH
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
DEFAULT_CERT_DIR: Final = "/certs"
DEFAULT_PROXY_CERT_DIR: Final = "/proxycerts/"
DEFAULT_EXTRA_HEADERS_DIR: Final = "/extraheaders"
DEFAULT_GOOGLE_CREDENTIALS_DIR: Final = "/google"
GOOGLE_CREDENTIALS_FILE: Final = "credentials.json"
DEFAULT_METRICS_ADDR: Final = ":8443"
DISK_IMAGE_NAME: Final = "disk.img"
SCRATCH_IMAGE_NAME: Final = "tmpimage"

SOURCE_HTTP: Final = "http"
SOURCE_S3: Final = "s3"
SOURCE_GCS: Final = "gcs"
SOURCE_REGISTRY: Final = "registry"
SOURCE_IMAGEIO: Final = "imageio"
SOURCE_VDDK: Final = "vddk"
SOURCE_NONE: Final = "none"

CONTENT_KUBEVIRT: Final = "kubevirt"
CONTENT_ARCHIVE: Final = "archive"
