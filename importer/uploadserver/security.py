"""The upload server's TLS: its certificate, the CA it trusts for client certificates, and the check
that the client is the one it was created for.

As upstream: a client certificate is optional at the TLS level (`CERT_OPTIONAL`, Go's
`VerifyClientCertIfGiven`), and each upload request then needs a verified certificate whose subject
CN equals CLIENT_NAME (`client.upload-server.cdi.kubevirt.io` for the proxy, or the clone source's
name), else 401. /healthz needs no certificate so readiness probes work. Used by
`importer.uploadserver.handlers` and `main`.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

from importer.errors import ConfigurationError
from importer.uploadserver.config import TLSFiles

_GO_VERSIONS = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}


log = logging.getLogger(__name__)
_Stamp = tuple[tuple[int, int, int] | None, ...]


def _build(tls: TLSFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _GO_VERSIONS.get(tls.min_version, ssl.TLSVersion.TLSv1_2)
    context.load_cert_chain(tls.cert, tls.key)
    context.load_verify_locations(cafile=tls.client_ca)
    if tls.ciphers:
        context.set_ciphers(":".join(tls.ciphers))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _stamp(tls: TLSFiles) -> _Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in (tls.cert, tls.key, tls.client_ca):
        try:
            st = path.stat()
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class _Reloader:
    """The listening context's server-name callback: hands each new connection the newest context."""

    def __init__(self, tls: TLSFiles, context: ssl.SSLContext) -> None:
        self._tls, self._stamp, self._latest = tls, _stamp(tls), context
        self._lock = threading.Lock()  # handshakes of upgraded clone connections run on threads

    def __call__(self, connection: Any, _server_name: str | None, listening: ssl.SSLContext) -> None:
        with self._lock:
            stamp = _stamp(self._tls)
            if stamp != self._stamp:
                try:
                    self._latest = _build(self._tls)
                    log.info("reloaded the TLS certificate and client CA bundle")
                except (OSError, ssl.SSLError) as e:
                    log.warning("could not reload the TLS files (keeping the previous ones): %s", e)
                self._stamp = stamp
            latest = self._latest
        if latest is not listening:
            connection.context = latest


def server_context(tls: TLSFiles) -> ssl.SSLContext:
    """The listening context, which reloads its files for new connections when they change; any unreadable
    file at start is upstream's `invalid TLS config`."""
    try:
        context = _build(tls)
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(f"invalid TLS config: {e}") from e
    context.sni_callback = _Reloader(tls, context)
    return context


def subject_common_names(peercert: Any) -> list[str]:
    """The subject CNs of a certificate as `SSLSocket.getpeercert()` returns it (empty when none)."""
    if not isinstance(peercert, dict):
        return []
    names: list[str] = []
    for rdn in peercert.get("subject", ()):
        names.extend(value for key, value in rdn if key == "commonName")
    return names


def client_allowed(peercert: Any, client_name: str) -> bool:
    """Whether the verified client certificate (Python only reports verified ones) names our client."""
    return client_name in subject_common_names(peercert)
