"""The proxy's rotating credentials: its server certificate, the client certificate and CA it uses
towards upload servers, and the public keys that verify upload tokens.

The control plane rotates all of them by rewriting files (Secret and ConfigMap volumes in a
cluster, plain files when embedded). Every `interval` seconds `watch` compares each file's mtime,
size and inode, and reloads what changed; a file caught half-written fails to load and is tried again
at the next check, while the previous credentials stay in use. The server certificate is loaded into
the listening context in place (new handshakes use it; a new pair is checked in a scratch context
first, so a mismatched key never reaches the live one). Upstream's `APISERVER_PUBLIC_KEY` (PEM in
the environment) is supported as a fixed key set. Used by `uploadproxy.main`; `uploadproxy.app`
only calls `verifier()` and `client_ssl()`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from cdi.tokens import TokenVerifier

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_INTERVAL = 10.0
_LOAD_ERRORS = (OSError, ValueError, ssl.SSLError)


class Watched(Generic[T]):
    """A value loaded from files and loaded again whenever one of them changes."""

    def __init__(self, paths: Sequence[Path], load: Callable[[], T], what: str) -> None:
        self._paths = tuple(paths)
        self._load = load
        self._what = what
        self._stamp = self._stamps()
        self.value = load()

    def _stamps(self) -> tuple[tuple[int, int, int] | None, ...]:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._paths:
            try:
                st = path.stat()
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def refresh(self) -> bool:
        stamp = self._stamps()
        if stamp == self._stamp:
            return False
        try:
            value = self._load()
        except _LOAD_ERRORS as e:
            log.warning("could not reload %s (keeping the previous one): %s", self._what, e)
            return False
        self.value, self._stamp = value, stamp
        log.info("reloaded %s", self._what)
        return True


@dataclass(frozen=True)
class CredentialFiles:
    client_cert: Path
    client_key: Path
    upload_server_ca: Path
    server_cert: Path | None = None  # None: the proxy serves plain HTTP (behind a TLS terminator, or tests)
    server_key: Path | None = None
    public_keys: Path | None = None  # a PEM bundle of RSA public keys
    public_keys_pem: bytes = b""  # upstream's APISERVER_PUBLIC_KEY, when no file is given


def client_context(files: CredentialFiles) -> ssl.SSLContext:
    """mTLS towards upload servers: our client certificate, trusting only the upload-server CA."""
    context = ssl.create_default_context(cafile=str(files.upload_server_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.client_cert, files.client_key)
    return context


class ProxyCredentials:
    def __init__(self, files: CredentialFiles) -> None:
        self.server_context: ssl.SSLContext | None = None
        self._server: Watched[None] | None = None
        if files.server_cert is not None and files.server_key is not None:
            cert, key = files.server_cert, files.server_key
            self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.server_context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._server = Watched([cert, key], lambda: self._load_server(cert, key), "proxy server certificate")
        self._client = Watched([files.client_cert, files.client_key, files.upload_server_ca],
                               lambda: client_context(files), "upload client certificate")
        if files.public_keys is not None:
            path = files.public_keys
            self._keys = Watched([path], lambda: TokenVerifier.from_pem_bundle(path.read_bytes()),
                                 "token verification keys")
        else:
            self._keys = Watched([], lambda: TokenVerifier.from_pem_bundle(files.public_keys_pem),
                                 "token verification keys")

    def _load_server(self, cert: Path, key: Path) -> None:
        assert self.server_context is not None
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)  # a mismatched pair fails here
        self.server_context.load_cert_chain(cert, key)

    def verifier(self) -> TokenVerifier:
        return self._keys.value

    def client_ssl(self) -> ssl.SSLContext:
        return self._client.value

    def refresh(self) -> None:
        for watched in (self._server, self._client, self._keys):
            if watched is not None:
                watched.refresh()

    async def watch(self, interval: float = DEFAULT_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.refresh()
