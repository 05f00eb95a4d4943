"""Runs the upload proxy inside `cdi serve` (the embedded mode's counterpart of the cdi-uploadproxy
Deployment): it keeps the proxy's credential files under `<home>/uploadproxy/` in step with the
control plane's Secrets — the token key ring (rotated when due), the CA that signs upload servers, the
proxy's server certificate (for 127.0.0.1 and localhost) and its client certificate — and serves
`uploadproxy`'s application with the cluster-backed resolver. The proxy reloads changed files itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from cdi.cluster.protocol import Cluster
from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME
from cdi.controllers.upload.credentials import ensure_ca, ensure_key_ring, leaf_due
from cdi.controllers.upload.resolver import ClusterUploadResolver
from cdi.pki import KeyPair, issue
from cdi.runtime.types import Clock
from uploadproxy.credentials import CredentialFiles
from uploadproxy.main import ProxyConfig, ProxyServer

log = logging.getLogger(__name__)
REFRESH_INTERVAL = 60.0
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


class EmbeddedUploadProxy:
    def __init__(self, cluster: Cluster, home: Path, clock: Clock, *, address: str = "127.0.0.1",
                 port: int = 31443) -> None:
        self._cluster = cluster
        self._dir = home / "uploadproxy"
        self._clock = clock
        self._address = address
        self._port = port
        self._server: ProxyServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.files = CredentialFiles(
            client_cert=self._dir / "client.crt", client_key=self._dir / "client.key",
            upload_server_ca=self._dir / "ca.crt", server_cert=self._dir / "tls.crt",
            server_key=self._dir / "tls.key", public_keys=self._dir / "token-keys.pem")

    @property
    def url(self) -> str:
        port = self._server.port if self._server else self._port
        return f"https://{self._address}:{port}"

    @property
    def ca_pem(self) -> str:
        return self.files.upload_server_ca.read_text()

    async def start(self) -> str:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.refresh()
        self._server = ProxyServer(ProxyConfig(self._address, self._port, self.files),
                                   ClusterUploadResolver(self._cluster))
        await self._server.start()
        self._refresher = asyncio.create_task(self._refresh_forever())
        log.info("upload proxy serving %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._server is not None:
            await self._server.stop()

    async def refresh(self) -> None:
        """Bring the files in step with the Secrets; issue leaf certificates when new or due."""
        now = self._clock.now()
        ring = await ensure_key_ring(self._cluster, now)
        _write(self.files.public_keys, ring.public_bundle_pem())
        ca = await ensure_ca(self._cluster, now)
        _write(self.files.upload_server_ca, ca.cert_pem)
        if leaf_due(_read_pair(self.files.server_cert, self.files.server_key), now):
            pair = issue(ca, "cdi-uploadproxy", now, names=SERVER_NAMES)
            _write_pair(self.files.server_cert, self.files.server_key, pair)
        if leaf_due(_read_pair(self.files.client_cert, self.files.client_key), now):
            _write_pair(self.files.client_cert, self.files.client_key, issue(ca, UPLOAD_CLIENT_NAME, now, client=True))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.refresh()
            except Exception as e:  # keep serving with the current credentials; try again next time
                log.warning("could not refresh the upload proxy's credentials: %s", e)


def _read_pair(cert: Path | None, key: Path | None) -> KeyPair | None:
    if cert is None or key is None or not cert.exists() or not key.exists():
        return None
    return KeyPair(cert.read_bytes(), key.read_bytes())


def _write(path: Path | None, data: bytes) -> None:
    """Atomically, so the proxy never loads a half-written file."""
    assert path is not None
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_pair(cert: Path | None, key: Path | None, pair: KeyPair) -> None:
    _write(key, pair.key_pem)
    _write(cert, pair.cert_pem)
