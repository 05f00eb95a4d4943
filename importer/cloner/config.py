"""The clone source pod's environment (upstream's names, `cdi.contracts.clone_protocol`), parsed once.

The source is `<MOUNT_POINT>/disk.img` for a Filesystem volume and the device at MOUNT_POINT for a
Block one (VOLUME_MODE "block"/"filesystem", any case). Only the scheme and authority of UPLOAD_URL
are used: the clone endpoints have fixed paths, and upstream's value ends in `/v1beta1/upload`. The
server certificate is checked against CDI_CLONE_SERVER_NAME when set (the control plane addresses the
upload pod by IP, its certificate names the Service), else the URL's host. Used by `importer.cloner.main`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cdi.contracts import clone_protocol as cp
from cdi.contracts import importer_env as env
from importer.config import parse_go_bool
from importer.errors import ConfigurationError


@dataclass(frozen=True)
class ClonerConfig:
    base_url: str
    server_name: str | None
    client_cert: str
    client_key: str
    server_ca: str
    owner_uid: str
    volume_mode: cp.VolumeMode
    source: Path
    detect: bool
    metrics_addr: str
    termination_log: Path


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value.strip():
        raise ConfigurationError(f"{name} is required for a clone source")
    return value


def _base_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigurationError(f"{cp.UPLOAD_URL} must be an https URL, got {text!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _mode(text: str) -> cp.VolumeMode:
    for mode in cp.VolumeMode:
        if text.strip().lower() == mode.value.lower():
            return mode
    raise ConfigurationError(f"{cp.VOLUME_MODE} must be filesystem or block, got {text!r}")


def load_config(environ: Mapping[str, str]) -> ClonerConfig:
    mode = _mode(environ.get(cp.VOLUME_MODE, "filesystem"))
    default_mount = cp.SOURCE_DEVICE if mode is cp.VolumeMode.BLOCK else cp.SOURCE_MOUNT
    mount = Path(environ.get(cp.MOUNT_POINT) or default_mount)
    base_url = _base_url(_required(environ, cp.UPLOAD_URL))
    tls = base_url.startswith("https:")
    return ClonerConfig(
        base_url=base_url,
        server_name=environ.get(cp.SERVER_NAME) or None,
        client_cert=_required(environ, cp.CLIENT_CERT) if tls else "",
        client_key=_required(environ, cp.CLIENT_KEY) if tls else "",
        server_ca=_required(environ, cp.SERVER_CA_CERT) if tls else "",
        owner_uid=environ.get(cp.OWNER_UID, ""),
        volume_mode=mode,
        source=mount if mode is cp.VolumeMode.BLOCK else mount / env.DISK_IMAGE_NAME,
        detect=parse_go_bool(cp.DETECT_ZEROES, environ.get(cp.DETECT_ZEROES), default=True),
        metrics_addr=environ.get(env.METRICS_ADDR, env.DEFAULT_METRICS_ADDR),
        termination_log=Path(environ.get(env.TERMINATION_LOG, env.DEFAULT_TERMINATION_LOG)),
    )
