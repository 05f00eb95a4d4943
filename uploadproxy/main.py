"""`cdi-uploadproxy`: the standalone upload proxy (upstream's `cmd/cdi-uploadproxy`).

Environment (names in `cdi.contracts.upload_protocol`): LISTEN_ADDRESS / LISTEN_PORT (default
0.0.0.0:8443); SERVER_CERT_FILE / SERVER_KEY_FILE (its HTTPS certificate); UPLOAD_CLIENT_CERT_FILE /
UPLOAD_CLIENT_KEY_FILE (the client certificate, CN `client.upload-server.cdi.kubevirt.io`, it
presents to upload servers) and UPLOAD_SERVER_CA_FILE (the CA it trusts for them);
APISERVER_PUBLIC_KEY_FILE (a PEM bundle of token keys, reloaded on change) or upstream's
APISERVER_PUBLIC_KEY (PEM content; one of the two is required). All files are re-read when they change
(every CDI_UPLOADPROXY_RELOAD_INTERVAL seconds, default 10). Upload servers are found by upstream's
Service DNS names; `ProxyServer` takes any other resolver (the control plane passes its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cdi.contracts import upload_protocol as up
from uploadproxy.app import build_app
from uploadproxy.credentials import DEFAULT_INTERVAL, CredentialFiles, ProxyCredentials
from uploadproxy.forward import Readiness
from uploadproxy.resolver import ServiceDnsResolver, UploadTargetResolver

log = logging.getLogger("uploadproxy")


class ProxyConfigError(Exception):
    """The environment does not describe a working proxy."""


@dataclass(frozen=True)
class ProxyConfig:
    listen_address: str
    listen_port: int
    files: CredentialFiles
    reload_interval: float = DEFAULT_INTERVAL


def load_config(environ: Mapping[str, str]) -> ProxyConfig:
    def path(name: str, default: str) -> Path:
        return Path(environ.get(name) or default)

    key_file, key_pem = environ.get(up.APISERVER_PUBLIC_KEY_FILE), environ.get(up.APISERVER_PUBLIC_KEY, "")
    if not key_file and not key_pem:
        raise ProxyConfigError(f"{up.APISERVER_PUBLIC_KEY} not defined")
    try:
        port = int(environ.get(up.LISTEN_PORT) or up.DEFAULT_LISTEN_PORT)
        interval = float(environ.get(up.RELOAD_INTERVAL) or DEFAULT_INTERVAL)
    except ValueError as e:
        raise ProxyConfigError(f"invalid number in the environment: {e}") from e
    files = CredentialFiles(
        client_cert=path(up.UPLOAD_CLIENT_CERT_FILE, up.DEFAULT_UPLOAD_CLIENT_CERT),
        client_key=path(up.UPLOAD_CLIENT_KEY_FILE, up.DEFAULT_UPLOAD_CLIENT_KEY),
        upload_server_ca=path(up.UPLOAD_SERVER_CA_FILE, up.DEFAULT_UPLOAD_SERVER_CA),
        server_cert=path(up.SERVER_CERT_FILE, up.DEFAULT_SERVER_CERT),
        server_key=path(up.SERVER_KEY_FILE, up.DEFAULT_SERVER_KEY),
        public_keys=Path(key_file) if key_file else None, public_keys_pem=key_pem.encode())
    return ProxyConfig(environ.get(up.LISTEN_ADDRESS) or "0.0.0.0", port, files, interval)


class ProxyServer:
    """The proxy with its rotating credentials, startable in-process."""

    def __init__(self, config: ProxyConfig, resolver: UploadTargetResolver | None = None, *,
                 clock: Callable[[], float] = time.time, readiness: Readiness | None = None) -> None:
        self._config = config
        self.credentials = ProxyCredentials(config.files)
        app = build_app(resolver or ServiceDnsResolver(), self.credentials.verifier, self.credentials.client_ssl,
                        clock=clock, readiness=readiness)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.listen_address, self._config.listen_port,
                           ssl_context=self.credentials.server_context)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._config.listen_port
        self._watcher = asyncio.create_task(self.credentials.watch(self._config.reload_interval))
        log.info("upload proxy listening on %s:%d", self._config.listen_address, self.port)
        return self.port

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._runner.cleanup()


async def run(environ: Mapping[str, str]) -> int:
    try:
        server = ProxyServer(load_config(environ))
    except (ProxyConfigError, OSError, ValueError) as e:
        log.error("cannot start the upload proxy: %s", e)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await server.start()
        await stopping.wait()
    except OSError as e:
        log.error("upload proxy failed: %s", e)
        return 1
    finally:
        await server.stop()
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(run(os.environ)))


if __name__ == "__main__":
    main()
