"""The upload server's configuration, parsed once from the environment (upstream's contract in
`cdi.contracts.upload_protocol`, plus the importer's CDI_* paths for running outside a pod).

Where the disk goes: CDI_DATA_PATH when set (the embedded pod runner maps the pod's volume there);
otherwise DESTINATION, upstream's `/data/disk.img` (its directory is the volume) or
`/dev/cdi-block-volume` (a block device). Scratch space only where CDI_SCRATCH_PATH says (the pod
spec sets it when it mounts a scratch volume), never a default path. Upstream's quirks kept: an
invalid LISTEN_PORT is ignored, an unparsable PREALLOCATION means false, an invalid DEADLINE is fatal.
Used by `importer.uploadserver.main`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cdi.contracts import importer_env
from cdi.contracts import upload_protocol as up
from cdi.quantity import QuantityError, parse_quantity
from cdi.sizing import parse_overhead
from importer.blockio import is_block_device
from importer.config import parse_go_bool, scratch_path
from importer.errors import ConfigurationError

DEFAULT_RESUME_TIMEOUT = 30 * 60.0


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    client_ca: Path
    ciphers: tuple[str, ...] = ()
    min_version: str = ""


@dataclass(frozen=True)
class UploadServerConfig:
    listen_address: str
    listen_port: int
    data_path: Path
    scratch_path: Path | None  # None: no scratch volume (`importer.config.scratch_path`)
    termination_log: Path
    image_size: int | None
    filesystem_overhead: Decimal
    preallocation: bool
    tls: TLSFiles | None  # None: plain HTTP (tests only)
    client_name: str
    deadline: datetime.datetime | None
    resume_timeout: float = DEFAULT_RESUME_TIMEOUT


def _port(text: str | None) -> int:
    try:
        port = int(text or "")
    except ValueError:
        return up.DEFAULT_LISTEN_PORT
    return port if 0 <= port < 65536 else up.DEFAULT_LISTEN_PORT


def _data_path(environ: Mapping[str, str]) -> Path:
    if importer_env.DATA_PATH in environ:
        return Path(environ[importer_env.DATA_PATH])
    destination = Path(environ.get(up.DESTINATION) or up.DEFAULT_DESTINATION)
    return destination if is_block_device(destination) else destination.parent


def _image_size(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        return parse_quantity(text.strip())
    except QuantityError as e:
        raise ConfigurationError(f"{up.UPLOAD_IMAGE_SIZE} is not a valid quantity: {text!r}") from e


def _deadline(text: str) -> datetime.datetime | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigurationError(f"{up.DEADLINE} is not an RFC 3339 time: {text!r}") from e
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _tls(environ: Mapping[str, str]) -> TLSFiles | None:
    if parse_go_bool(up.INSECURE, environ.get(up.INSECURE)):
        return None
    ciphers = tuple(c.strip() for c in environ.get(up.TLS_CIPHERS, "").split(",") if c.strip())
    return TLSFiles(cert=Path(environ.get(up.TLS_CERT_FILE) or up.DEFAULT_TLS_CERT),
                    key=Path(environ.get(up.TLS_KEY_FILE) or up.DEFAULT_TLS_KEY),
                    client_ca=Path(environ.get(up.CLIENT_CERT_FILE) or up.DEFAULT_CLIENT_CA),
                    ciphers=ciphers, min_version=environ.get(up.TLS_MIN_VERSION, ""))


def _preallocation(text: str | None) -> bool:
    try:
        return parse_go_bool(importer_env.PREALLOCATION, text)
    except ConfigurationError:
        return False  # upstream's upload server treats a parse error as false


def _resume_timeout(text: str | None) -> float:
    try:
        value = float(text or DEFAULT_RESUME_TIMEOUT)
    except ValueError as e:
        raise ConfigurationError(f"{up.RESUME_TIMEOUT} must be a number of seconds, got {text!r}") from e
    if value <= 0:
        raise ConfigurationError(f"{up.RESUME_TIMEOUT} must be positive, got {text!r}")
    return value


def load_config(environ: Mapping[str, str]) -> UploadServerConfig:
    return UploadServerConfig(
        listen_address=environ.get(up.LISTEN_ADDRESS, "0.0.0.0") or "0.0.0.0",
        listen_port=_port(environ.get(up.LISTEN_PORT)),
        data_path=_data_path(environ),
        scratch_path=scratch_path(environ),
        termination_log=Path(environ.get(importer_env.TERMINATION_LOG, importer_env.DEFAULT_TERMINATION_LOG)),
        image_size=_image_size(environ.get(up.UPLOAD_IMAGE_SIZE, "")),
        filesystem_overhead=parse_overhead(environ.get(importer_env.FILESYSTEM_OVERHEAD)),
        preallocation=_preallocation(environ.get(importer_env.PREALLOCATION)),
        tls=_tls(environ),
        client_name=environ.get(up.CLIENT_NAME, up.UPLOAD_CLIENT_NAME) or up.UPLOAD_CLIENT_NAME,
        deadline=_deadline(environ.get(up.DEADLINE, "")),
        resume_timeout=_resume_timeout(environ.get(up.RESUME_TIMEOUT)),
    )
