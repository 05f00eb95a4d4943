"""`cdi apiserver`: cdi-apiserver against a real Kubernetes API server.

Serves CDI's admission webhooks and the aggregated `upload.cdi.kubevirt.io` API (`cdi.apiserver`) over
HTTPS on `--port` (upstream's 8443), with the serving certificate the install mounts (`--tls-cert-file`,
`--tls-private-key-file`). At start it loads — or creates, RSA-2048 — the token signing key in Secret
`cdi-api-signing-key` of `--namespace` (clone tokens; upload tokens until the rotating key ring of the
controller exists, then its current key: `cdi.apiserver.uploadkeys`), and reads the front proxy it trusts from ConfigMap
`kube-system/extension-apiserver-authentication` (without a request-header CA there, every token request
is 401 and a warning says why). The cluster is reached through the Kubernetes backend (`cdi.kube`): in a
pod with its service account when no `--kubeconfig` is given. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cdi.apiserver.frontproxy import CONFIG_MAP, RequestHeaderAuth
from cdi.apiserver.server import ApiServer, serving_context, start
from cdi.apiserver.signingkey import ensure_signing_key
from cdi.apiserver.uploadkeys import RingSigningKey
from cdi.cli.daemon import run_until_stopped
from cdi.cli.errors import CliError
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.contracts.deployment import APISERVER_PORT, APISERVER_SERVING_SECRET, NAMESPACE, SIGNING_KEY_SECRET
from cdi.controllers.upload.credentials import read_key_ring
from cdi.controllers.upload.rotation import Schedule
from cdi.kube import connect
from cdi.tokens import KeyRing

log = logging.getLogger("cdi.apiserver")
# Where the install mounts the serving certificate (upstream's mount point for certificate volumes).
CERT_DIR = Path("/var/run/certs") / APISERVER_SERVING_SECRET


@dataclass(frozen=True)
class ApiServerCommand:
    kubeconfig: Path | None
    namespace: str
    bind_address: str
    port: int
    tls_cert_file: Path
    tls_private_key_file: Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("apiserver", help="serve CDI's admission webhooks and upload token API on a cluster")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: the pod's service account, else $KUBECONFIG)")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", NAMESPACE),
                        help=f"namespace CDI is installed in, where Secret {SIGNING_KEY_SECRET} lives (default: cdi)")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=APISERVER_PORT, help="HTTPS port (default: 8443; 0: any)")
    parser.add_argument("--tls-cert-file", type=Path, default=CERT_DIR / "tls.crt",
                        help="serving certificate, PEM (default: where the install mounts it)")
    parser.add_argument("--tls-private-key-file", type=Path, default=CERT_DIR / "tls.key",
                        help="its private key, PEM")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(ApiServerCommand(
        args.kubeconfig, args.namespace, args.bind_address, args.port, args.tls_cert_file,
        args.tls_private_key_file))))


async def _token_key_ring(cluster: Cluster, namespace: str) -> KeyRing | None:
    found = await read_key_ring(cluster, namespace)
    return found[1].ring if found is not None else None


async def run(command: ApiServerCommand) -> int:
    return await run_until_stopped(lambda stop: serve(command, stop))


async def serve(command: ApiServerCommand, stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    for path in (command.tls_cert_file, command.tls_private_key_file):
        if not path.is_file():
            raise CliError(f"{path} does not exist: pass --tls-cert-file and --tls-private-key-file")
    async with await connect(command.kubeconfig) as cluster:
        key = await ensure_signing_key(cluster, command.namespace, time.time())
        auth = await front_proxy(cluster)
        ring = RingSigningKey(lambda: _token_key_ring(cluster, command.namespace), key,
                              propagation=Schedule.from_environ(os.environ).propagation)
        server = ApiServer(cluster, key, auth, upload_key=ring.current)
        context = serving_context(command.tls_cert_file, command.tls_private_key_file, auth)
        runner, port = await start(server, command.bind_address, command.port, context)
        log.info("cdi-apiserver serving https://%s:%d (signing key %s)", command.bind_address, port, key.kid)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


async def front_proxy(cluster: Cluster) -> RequestHeaderAuth | None:
    """The front proxy the API server says it uses; None (with a warning) when it has none."""
    namespace, name = CONFIG_MAP
    try:
        config_map = await cluster.get("v1", "ConfigMap", name, namespace)
    except NotFound:
        config_map = {}
    auth = RequestHeaderAuth.from_config_map(config_map.get("data") or {})
    if auth is None:
        log.warning("no requestheader-client-ca-file in ConfigMap %s/%s: the API server has no front proxy, so "
                    "every UploadTokenRequest will be refused as Unauthorized", namespace, name)
    return auth
