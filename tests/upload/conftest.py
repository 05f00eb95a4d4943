"""Fixtures for the upload data plane: the proxy's client certificate (CN
`client.upload-server.cdi.kubevirt.io`) and an impostor's, a token key ring, a factory of in-process
upload servers on loopback that are stopped (their pipelines ended) after each test, and an
in-process upload proxy with a table resolver and its credentials in rewritable files."""

from __future__ import annotations

import shutil
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME
from cdi.tokens import KeyRing, SigningKey, TokenPayload, generate_signing_key, issue_token
from tests.support.tls import ClientCert, TestPKI, make_client_cert
from tests.upload.support import HOST, ServerHandle, TableResolver, client_context, start_server
from uploadproxy.credentials import CredentialFiles
from uploadproxy.forward import Readiness
from uploadproxy.main import ProxyConfig, ProxyServer

StartServer = Callable[..., Awaitable[ServerHandle]]


@pytest.fixture(scope="session")
def proxy_client_cert(pki: TestPKI) -> ClientCert:
    return make_client_cert(pki, UPLOAD_CLIENT_NAME)


@pytest.fixture(scope="session")
def impostor_cert(pki: TestPKI) -> ClientCert:
    return make_client_cert(pki, "client.somebody-else.example")


@pytest.fixture(scope="session")
def key_ring() -> KeyRing:
    return KeyRing(generate_signing_key(time.time()))


@pytest.fixture
def mtls(pki: TestPKI, proxy_client_cert: ClientCert) -> ssl.SSLContext:
    """What the proxy presents to upload servers."""
    return client_context(pki, proxy_client_cert)


@pytest.fixture
async def upload_server(pki: TestPKI, tmp_path: Path) -> AsyncIterator[StartServer]:
    started: list[ServerHandle] = []

    async def start(env: Mapping[str, str] | None = None, name: str = "") -> ServerHandle:
        handle = await start_server(pki, tmp_path / (name or f"server{len(started)}"), env)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        await handle.server.stop()


@dataclass
class ProxyHandle:
    server: ProxyServer
    resolver: TableResolver
    files: CredentialFiles
    ring: KeyRing

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.server.port}"

    def token(self, namespace: str, pvc: str, *, now: float | None = None, key: SigningKey | None = None,
              operation: str = "Upload") -> str:
        payload = TokenPayload(operation, pvc, namespace)
        return issue_token(key or self.ring.current, payload, time.time() if now is None else now)

    def auth(self, namespace: str = "default", pvc: str = "disk", **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(namespace, pvc, **kwargs)}"}


@pytest.fixture
async def proxy(pki: TestPKI, proxy_client_cert: ClientCert, key_ring: KeyRing,
                tmp_path: Path) -> AsyncIterator[ProxyHandle]:
    """An in-process proxy (real TLS both ways) whose resolver is a table the test fills in."""
    directory = tmp_path / "proxy"
    directory.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.directory / name, directory / name)
    (directory / "token-keys.pem").write_bytes(key_ring.public_bundle_pem())
    files = CredentialFiles(client_cert=proxy_client_cert.cert, client_key=proxy_client_cert.key,
                            upload_server_ca=pki.ca_cert, server_cert=directory / "server.crt",
                            server_key=directory / "server.key", public_keys=directory / "token-keys.pem")
    resolver = TableResolver({})
    server = ProxyServer(ProxyConfig(HOST, 0, files, reload_interval=3600), resolver,
                         readiness=Readiness(timeout=1.5, interval=0.1))
    await server.start()
    yield ProxyHandle(server, resolver, files, key_ring)
    await server.stop()
