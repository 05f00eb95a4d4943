"""Runs the upload proxy on a `Cluster`: inside `cdi serve` (the embedded mode's counterpart of the
cdi-uploadproxy Deployment) and as `cdi uploadproxy --kubeconfig` (`cdi.cli.uploadproxycmd`) against a
real API server. It keeps the proxy's credential files under `<home>/uploadproxy/` in step with the
Secrets of CDI's install namespace — the public keys that verify upload tokens (a staged key included), the
bundle of CAs that sign upload servers, its client certificate (Secret `cdi-uploadserver-client-cert`, which
the rotation controller renews; made here if it does not exist yet) and its own serving certificate (for
127.0.0.1 and localhost, renewed here by certConfig's `server` lifetime under the long-lived
`cdi-uploadproxy-signer`, the CA clients pin through CDIConfig's status.uploadProxyCA) — every
`Schedule.refresh` seconds (`CDI_CREDENTIAL_REFRESH_INTERVAL`, default 60), and
serves `uploadproxy`'s application with the cluster-backed resolver, which finds upload servers by pod IP
(a cluster without kube-proxy or DNS cannot reach Service names). The proxy reloads changed files itself.

Where the token keys come from is the one difference between the modes (`TokenKeySource`): embedded,
the key ring `cdi serve` rotates (`key_ring_keys`); on a cluster, the key cdi-apiserver signs with,
Secret `cdi-api-signing-key` (`install_token_keys`), plus the ring's keys if one exists."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from cdi.apiserver.signingkey import PUBLIC_KEY
from cdi.cli.errors import CliError
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster
from cdi.contracts.deployment import SIGNING_KEY_SECRET
from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME
from cdi.controllers.upload.credentials import (
    CDI_NAMESPACE,
    CLIENT_SECRET,
    TOKEN_KEYS_SECRET,
    RingSecret,
    cert_policies,
    client_secret,
    decode,
    ensure_ca_keys,
    ensure_proxy_ca,
    ensure_ring_secret,
)
from cdi.controllers.upload.resolver import ClusterUploadResolver
from cdi.controllers.upload.rotation import Schedule, leaf_due
from cdi.pki import KeyPair, issue, signed_by
from cdi.runtime.types import Clock
from uploadproxy.credentials import DEFAULT_INTERVAL, CredentialFiles
from uploadproxy.main import ProxyConfig, ProxyServer

log = logging.getLogger(__name__)
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")

# The PEM bundle of public keys that verify upload tokens, read from the cluster at `now`.
TokenKeySource = Callable[[Cluster, str, datetime], Awaitable[bytes]]


class NoTokenKeys(CliError):
    """Nothing in the install namespace can verify an upload token yet (cdi-apiserver has not started)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(f"no upload token keys in namespace {namespace}: neither Secret {SIGNING_KEY_SECRET} (made "
                         f"by `cdi apiserver`) nor {TOKEN_KEYS_SECRET} exists")


async def key_ring_keys(cluster: Cluster, namespace: str, now: datetime) -> bytes:
    """The embedded mode's: the key ring's public keys and its staged key's, the ring created on first use."""
    return (await ensure_ring_secret(cluster, now, namespace)).verification_pem()


async def _secret_data(cluster: Cluster, name: str, namespace: str) -> dict[str, bytes] | None:
    try:
        return decode(await cluster.get("v1", "Secret", name, namespace))
    except NotFound:
        return None


async def install_token_keys(cluster: Cluster, namespace: str, now: datetime) -> bytes:
    """A cluster's: the public key of cdi-apiserver's signing key (upstream's APISERVER_PUBLIC_KEY), and the
    key ring's public keys when one exists. Read only: cdi-apiserver owns the key. `NoTokenKeys` if neither."""
    bundle = b""
    if (signing := await _secret_data(cluster, SIGNING_KEY_SECRET, namespace)) and PUBLIC_KEY in signing:
        bundle += signing[PUBLIC_KEY].strip() + b"\n"
    if ring := await _secret_data(cluster, TOKEN_KEYS_SECRET, namespace):
        bundle += RingSecret.from_data(ring).verification_pem()
    if not bundle:
        raise NoTokenKeys(namespace)
    return bundle


class EmbeddedUploadProxy:
    """The upload proxy on `cluster`, with credentials from the Secrets of `namespace` (see the module
    docstring); `token_keys` says which keys verify upload tokens."""

    def __init__(self, cluster: Cluster, home: Path, clock: Clock, *, address: str = "127.0.0.1",
                 port: int = 31443, namespace: str = CDI_NAMESPACE,
                 token_keys: TokenKeySource = key_ring_keys, schedule: Schedule | None = None) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._token_keys = token_keys
        self._dir = home / "uploadproxy"
        self._clock = clock
        self._schedule = schedule or Schedule.from_environ(os.environ)
        self._address = address
        self._port = port
        self._server: ProxyServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.files = CredentialFiles(
            client_cert=self._dir / "client.crt", client_key=self._dir / "client.key",
            upload_server_ca=self._dir / "ca.crt", server_cert=self._dir / "tls.crt",
            server_key=self._dir / "tls.key", public_keys=self._dir / "token-keys.pem")
        self._proxy_ca_file = self._dir / "proxy-ca.crt"

    @property
    def url(self) -> str:
        port = self._server.port if self._server else self._port
        return f"https://{self._address}:{port}"

    @property
    def ca_pem(self) -> str:
        """The CA clients trust the proxy's serving certificate by."""
        return self._proxy_ca_file.read_text()

    async def start(self) -> str:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.refresh()
        config = ProxyConfig(self._address, self._port, self.files, min(DEFAULT_INTERVAL, self._schedule.refresh))
        self._server = ProxyServer(config,
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
        """Bring the files in step with the Secrets; issue the serving certificate when new or due."""
        now = self._clock.now()
        _write(self.files.public_keys, await self._token_keys(self._cluster, self._namespace, now))
        policies = await cert_policies(self._cluster)
        ca = await ensure_ca_keys(self._cluster, now, self._namespace, policies.ca)
        _write(self.files.upload_server_ca, ca.bundle())
        client = await self._client_secret(ca.signer, ca.bundle(), now, policies.client.duration)
        _write_pair(self.files.client_cert, self.files.client_key, KeyPair(client["tls.crt"], client["tls.key"]))
        current = _read_pair(self.files.server_cert, self.files.server_key)
        earlier = current is not None and signed_by(current.cert_pem, ca.signer.cert_pem)
        proxy_ca = await ensure_proxy_ca(self._cluster, now, self._namespace, adopt=ca.signer if earlier else None)
        _write(self._proxy_ca_file, proxy_ca.cert_pem)
        if leaf_due(current.cert_pem if current else None, now, policies.server, (proxy_ca.cert_pem,)):
            names = SERVER_NAMES if self._address in SERVER_NAMES else (*SERVER_NAMES, self._address)
            pair = issue(proxy_ca, "cdi-uploadproxy", now, names=names, lifetime=policies.server.duration)
            _write_pair(self.files.server_cert, self.files.server_key, pair)
            log.info("upload proxy serving certificate issued, valid until %s", pair.expires())

    async def _client_secret(self, ca: KeyPair, bundle: bytes, now: datetime, lifetime: timedelta) -> dict[str, bytes]:
        """The client certificate's Secret, made here when the rotation controller has not made it yet."""
        try:
            return decode(await self._cluster.get("v1", "Secret", CLIENT_SECRET, self._namespace))
        except NotFound:
            pass
        pair = issue(ca, UPLOAD_CLIENT_NAME, now, client=True, lifetime=lifetime)
        try:
            return decode(await self._cluster.create(client_secret(pair, bundle, self._namespace)))
        except AlreadyExists:
            return decode(await self._cluster.get("v1", "Secret", CLIENT_SECRET, self._namespace))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._schedule.refresh)
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
