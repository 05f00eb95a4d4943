"""TLS trust for the network sources: the SSL context every source's aiohttp connector uses.

Trust is the system store plus, as upstream mounts them, the cluster-wide proxy CA bundle
(`IMPORTER_PROXY_CERT_DIR`) and the source's CA ConfigMap (`IMPORTER_CERT_DIR`); any file name
works, as with upstream's Go client. `INSECURE_TLS` turns verification off. Used by the HTTP source
(`importer.sources.http`) and the registry client (`importer.sources.registry.client`).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from importer.config import ImporterConfig

log = logging.getLogger(__name__)


def cert_files(directory: Path | None) -> list[Path]:
    """The regular, non-hidden files of a mounted ConfigMap directory (its `..data` links skipped)."""
    if directory is None or not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def build_ssl_context(config: ImporterConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.insecure_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    for path in [*cert_files(config.proxy_cert_dir), *cert_files(config.cert_dir)]:
        try:
            context.load_verify_locations(cafile=str(path))
        except ssl.SSLError:
            log.warning("No certs in %s", path)
    return context
