"""The importer's configuration, parsed once at the edge from the environment (upstream's contract,
`cdi.contracts.importer_env`) into a frozen, typed value. Nothing else in the importer reads
`os.environ`. Used by `importer.main`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.quantity import QuantityError, parse_quantity
from cdi.sizing import parse_overhead
from importer.errors import ConfigurationError

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
KNOWN_SOURCES = (env.SOURCE_HTTP, env.SOURCE_S3, env.SOURCE_GCS, env.SOURCE_REGISTRY,
                 env.SOURCE_IMAGEIO, env.SOURCE_VDDK, env.SOURCE_NONE)


def parse_go_bool(name: str, value: str | None, *, default: bool = False) -> bool:
    """Go's strconv.ParseBool, which upstream uses; anything else is a configuration error."""
    if value is None or value == "":
        return default
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ConfigurationError(f'the {name} environment variable is with a wrong value "{value}"; '
                             f'should be "true" or "false"')


@dataclass(frozen=True)
class ImporterConfig:
    source: str
    endpoint: str
    content_type: str
    image_size: int | None
    owner_uid: str
    filesystem_overhead: Decimal
    preallocation: bool
    cache_mode_try_none: bool
    insecure_tls: bool
    access_key_id: str
    secret_key: str
    cert_dir: Path | None
    proxy_cert_dir: Path | None
    extra_headers: tuple[str, ...]
    extra_headers_dir: Path
    checksum: str
    pull_method: str
    data_path: Path
    scratch_path: Path | None  # None: the pod has no scratch volume (see `scratch_path`)
    termination_log: Path
    metrics_addr: str
    progress_file: Path | None
    google_credentials: Path | None = None  # GOOGLE_APPLICATION_CREDENTIALS (GCS); None means anonymous
    storage_emulator_host: str = ""  # STORAGE_EMULATOR_HOST: GCS endpoint override
    registry_architecture: str = ""  # IMPORTER_REGISTRY_IMAGE_ARCHITECTURE; empty means the host's
    checkpoint_interval: int = env.DEFAULT_CHECKPOINT_INTERVAL  # bytes; 0: no checkpoints
    checkpoint_seconds: float = env.DEFAULT_CHECKPOINT_SECONDS

    @property
    def has_credentials(self) -> bool:
        """Upstream uses the access-key/secret pair only when both are set."""
        return bool(self.access_key_id and self.secret_key)


def _default_data_path(environ: Mapping[str, str]) -> Path:
    if env.DATA_PATH in environ:
        return Path(environ[env.DATA_PATH])
    block = Path(env.DEFAULT_BLOCK_PATH)
    return block if block.exists() else Path(env.DEFAULT_DATA_DIR)


def scratch_path(environ: Mapping[str, str]) -> Path | None:
    """Scratch space only where CDI_SCRATCH_PATH says, set by the pod spec exactly when it mounts a
    scratch volume; absent or empty means none. Never a default path: in embedded mode a pod is a
    local process, and a host directory that happens to be at /scratch is not the pod's scratch claim
    (it would bypass the claim's class and capacity, and be shared by concurrent imports)."""
    value = environ.get(env.SCRATCH_PATH, "").strip()
    return Path(value) if value else None


def _image_size(environ: Mapping[str, str]) -> int | None:
    raw = environ.get(env.IMAGE_SIZE, "").strip()
    if not raw:
        return None
    try:
        size = parse_quantity(raw)
    except QuantityError as e:
        raise ConfigurationError(f"{env.IMAGE_SIZE} is not a valid quantity: {raw!r}") from e
    if size <= 0:
        raise ConfigurationError(f"{env.IMAGE_SIZE} must be positive, got {raw!r}")
    return size


def _checkpoint_interval(environ: Mapping[str, str]) -> tuple[int, float]:
    raw, seconds = environ.get(env.CHECKPOINT_INTERVAL, "").strip(), environ.get(env.CHECKPOINT_SECONDS, "").strip()
    try:
        interval = parse_quantity(raw) if raw else env.DEFAULT_CHECKPOINT_INTERVAL
        every = float(seconds) if seconds else env.DEFAULT_CHECKPOINT_SECONDS
    except (QuantityError, ValueError) as e:
        raise ConfigurationError(f"{env.CHECKPOINT_INTERVAL}/{env.CHECKPOINT_SECONDS} are not a byte quantity and "
                                 f"a number of seconds: {raw!r}, {seconds!r}") from e
    if interval < 0 or not every > 0:
        raise ConfigurationError(f"{env.CHECKPOINT_INTERVAL} must not be negative and {env.CHECKPOINT_SECONDS} "
                                 f"must be positive")
    return interval, every


def _optional_dir(value: str | None) -> Path | None:
    return Path(value) if value else None


def load_config(environ: Mapping[str, str]) -> ImporterConfig:
    source = environ.get(env.SOURCE, "")
    if source not in KNOWN_SOURCES:
        raise ConfigurationError(f"Unknown data source: {source}")
    content_type = environ.get(env.CONTENT_TYPE) or env.CONTENT_KUBEVIRT
    if content_type not in (env.CONTENT_KUBEVIRT, env.CONTENT_ARCHIVE):
        raise ConfigurationError(f"Unknown content type: {content_type}")
    headers = tuple(value for key, value in sorted(environ.items()) if key.startswith(env.EXTRA_HEADER_PREFIX))
    progress_file = environ.get(env.PROGRESS_FILE)
    checkpoint_interval, checkpoint_seconds = _checkpoint_interval(environ)
    return ImporterConfig(
        source=source,
        endpoint=environ.get(env.ENDPOINT, ""),
        content_type=content_type,
        image_size=_image_size(environ),
        owner_uid=environ.get(env.OWNER_UID, ""),
        filesystem_overhead=parse_overhead(environ.get(env.FILESYSTEM_OVERHEAD)),
        preallocation=parse_go_bool(env.PREALLOCATION, environ.get(env.PREALLOCATION)),
        cache_mode_try_none=environ.get(env.CACHE_MODE) == "TRYNONE",
        insecure_tls=parse_go_bool(env.INSECURE_TLS, environ.get(env.INSECURE_TLS)),
        access_key_id=environ.get(env.ACCESS_KEY_ID, ""),
        secret_key=environ.get(env.SECRET_KEY, ""),
        cert_dir=_optional_dir(environ.get(env.CERT_DIR)),
        proxy_cert_dir=_optional_dir(environ.get(env.PROXY_CERT_DIR, env.DEFAULT_PROXY_CERT_DIR)),
        extra_headers=headers,
        extra_headers_dir=Path(environ.get(env.EXTRA_HEADERS_DIR, env.DEFAULT_EXTRA_HEADERS_DIR)),
        checksum=environ.get(env.CHECKSUM, ""),
        pull_method=environ.get(env.PULL_METHOD, "pod") or "pod",
        data_path=_default_data_path(environ),
        scratch_path=scratch_path(environ),
        termination_log=Path(environ.get(env.TERMINATION_LOG, env.DEFAULT_TERMINATION_LOG)),
        metrics_addr=environ.get(env.METRICS_ADDR, env.DEFAULT_METRICS_ADDR),
        progress_file=Path(progress_file) if progress_file else None,
        google_credentials=_optional_dir(environ.get(env.GOOGLE_APPLICATION_CREDENTIALS)),
        storage_emulator_host=environ.get(env.STORAGE_EMULATOR_HOST, "").strip(),
        registry_architecture=environ.get(env.REGISTRY_IMAGE_ARCHITECTURE, "").strip(),
        checkpoint_interval=checkpoint_interval,
        checkpoint_seconds=checkpoint_seconds,
    )
