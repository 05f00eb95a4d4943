"""The upload server's TLS: its certificate, the CA it trusts for client certificates, and the check
that the client is the one it was created for.

As upstream: a client certificate is optional at the TLS level (`CERT_OPTIONAL`, Go's
`VerifyClientCertIfGiven`), and each upload request then needs a verified certificate whose subject
CN equals CLIENT_NAME (`client.upload-server.cdi.kubevirt.io` for the proxy, or the clone source's
name), else 401. /healthz needs no certificate so readiness probes work. Used by
`importer.uploadserver.handlers` and `main`.
"""

from __future__ import annotations

import ssl
from typing import Any

from importer.errors import ConfigurationError
from importer.uploadserver.config import TLSFiles

_GO_VERSIONS = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}


def server_context(tls: TLSFiles) -> ssl.SSLContext:
    """The listening context; any unreadable file is upstream's `invalid TLS config`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _GO_VERSIONS.get(tls.min_version, ssl.TLSVersion.TLSv1_2)
    try:
        context.load_cert_chain(tls.cert, tls.key)
        context.load_verify_locations(cafile=tls.client_ca)
        if tls.ciphers:
            context.set_ciphers(":".join(tls.ciphers))
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(f"invalid TLS config: {e}") from e
    context.verify_mode = ssl.CERT_OPTIONAL
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
