"""`cdi uploadproxy --kubeconfig FILE`: cdi-uploadproxy against a real Kubernetes API server.

The same proxy `cdi serve` embeds (`cdi.cli.proxyhost`), on the Kubernetes backend (`cdi.kube`): it
finds a claim's upload server through the API, by the upload pod's IP (a cluster without kube-proxy or
DNS — `cdi node`'s — cannot reach Service names), verifies upload tokens with the public key of
cdi-apiserver's Secret `cdi-api-signing-key` (and the embedded key ring's, if one exists), and presents
a client certificate signed by the upload-server CA, Secret `cdi-uploadserver-ca` — all in the install
`--namespace`. Its credential files live under `<home>/uploadproxy/`. Until cdi-apiserver has made the
signing key, it waits (a warning says why). `cdi image-upload --kubeconfig ... --uploadproxy-url
https://ADDRESS:PORT` uploads through it. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cdi.cli.daemon import run_until_stopped
from cdi.cli.proxyhost import EmbeddedUploadProxy, NoTokenKeys, install_token_keys
from cdi.contracts.deployment import NAMESPACE
from cdi.kube import connect
from cdi.runtime.types import SystemClock

log = logging.getLogger("cdi.uploadproxy")
DEFAULT_PORT = 31443  # the embedded proxy's, so a URL that works with `cdi serve` works here
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class UploadProxyCommand:
    kubeconfig: Path | None
    namespace: str
    address: str
    port: int


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("uploadproxy", help="run the upload proxy against a Kubernetes API server")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: the pod's service account, else $KUBECONFIG)")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", NAMESPACE),
                        help="namespace CDI is installed in, where its Secrets live (default: cdi)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTPS port (default: {DEFAULT_PORT}; 0: any)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(
        UploadProxyCommand(args.kubeconfig, args.namespace, args.address, args.port), home)))


async def run(command: UploadProxyCommand, home: Path) -> int:
    return await run_until_stopped(lambda stop: serve(command, home, stop))


async def serve(command: UploadProxyCommand, home: Path, stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    async with await connect(command.kubeconfig) as cluster:
        proxy = EmbeddedUploadProxy(cluster, home, SystemClock(), address=command.address, port=command.port,
                                    namespace=command.namespace, token_keys=install_token_keys)
        if not await _start(proxy, stop):
            return
        log.info("cdi-uploadproxy serving %s (namespace %s)", proxy.url, command.namespace)
        try:
            await stop.wait()
        finally:
            await proxy.stop()


async def _start(proxy: EmbeddedUploadProxy, stop: asyncio.Event) -> bool:
    """Start once the token keys exist; False when stopped before."""
    warned = False
    while not stop.is_set():
        try:
            await proxy.start()
            return True
        except NoTokenKeys as e:
            if not warned:
                log.warning("%s; waiting for it", e.message)
                warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
    return False
