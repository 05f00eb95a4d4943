"""`cdi controller --kubeconfig FILE`: CDI's controllers against a real Kubernetes API server.

The same controller set `cdi serve` runs (`cdi.controllers.setup`), reading through the manager's
informer caches, with leader election through a Lease in `--namespace` (several replicas may run;
one reconciles), a client-side rate limit if asked for (`--qps`, `--burst`; none by default), health
endpoints and the control plane's Prometheus metrics at `/metrics`: by default on the health listener
(port 8080, where upstream's controller serves its metrics and the install's `cdi-prometheus-metrics`
Service points); `--metrics-port` gives them a listener of their own (0: any free port, logged), -1
turns them off. Nothing of the embedded mode runs here: on a cluster, kubelet runs the worker pods and
CSI drivers provision the volumes (or `cdi node` plays both on a machine without a kubelet). In a pod
it uses the pod's service account when no kubeconfig is given. SIGINT/SIGTERM stop it gracefully.

The clone controllers check and extend clone tokens with the key cdi-apiserver signs them with: Secret
`cdi-api-signing-key` in `--namespace` (`cdi.apiserver.signingkey`; whichever of the two starts first
creates it), read once at start — the key is never rotated.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cdi.apiserver.signingkey import ensure_signing_key
from cdi.cli.daemon import run_until_stopped
from cdi.cli.flags import parse_duration
from cdi.contracts.metrics import METRICS_PATH
from cdi.controllers import cdiconfig
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.progresswatch import DEFAULT_STALL_TIMEOUT
from cdi.controllers.setup import ControllerOptions, cdi_controllers, observe_cluster
from cdi.kube import connect
from cdi.kube.transport import DEFAULT_QPS
from cdi.monitoring import ControlPlaneMetrics, MetricsServer, metrics_handler
from cdi.runtime.health import HealthServer
from cdi.runtime.lease import LeaseLock
from cdi.runtime.manager import Manager
from cdi.runtime.types import SystemClock
from cdi.tokens import CloneTokens

log = logging.getLogger("cdi.controller")
LEASE_NAME = "cdi-controller-leader-election-helper"  # upstream's lock name
DEFAULT_IMAGE = "pycdi/pycdi:latest"


@dataclass(frozen=True)
class ControllerCommand:
    kubeconfig: Path | None
    namespace: str
    image: str
    uploadproxy_url: str | None
    health_port: int
    qps: float
    burst: int
    leader_elect: bool
    metrics_port: int | None = None  # None (or the health port): on the health listener; -1: off; else its own
    stall_timeout: float = DEFAULT_STALL_TIMEOUT.total_seconds()  # `progresswatch`: seconds without progress


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("controller", help="run CDI's controllers against a Kubernetes API server")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: the pod's service account, else $KUBECONFIG)")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "cdi"),
                        help="namespace CDI is installed in, where the leader Lease lives (default: cdi)")
    parser.add_argument("--image", default=os.environ.get("CDI_IMAGE", DEFAULT_IMAGE),
                        help="the image importer and upload-server pods run")
    parser.add_argument("--uploadproxy-url", default=None, help="the upload proxy's external URL, for CDIConfig")
    parser.add_argument("--health-port", type=int, default=8080, help="port of /healthz and /readyz (0: any)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="port of /metrics (default: the health port, 8080 as upstream; 0: any; -1: off)")
    parser.add_argument("--qps", type=float, default=DEFAULT_QPS,
                        help="API requests per second, a client-side limit (default: none, the API server's "
                             "Priority and Fairness decides, as controller-runtime's default; e.g. 20 for its old one)")
    parser.add_argument("--burst", type=int, default=30, help="API requests allowed in a burst when --qps is set")
    parser.add_argument("--no-leader-elect", dest="leader_elect", action="store_false",
                        help="reconcile without taking the leader Lease (one replica only)")
    parser.add_argument("--stall-timeout", type=parse_duration, default=DEFAULT_STALL_TIMEOUT.total_seconds(),
                        help="a transfer moving no bytes this long gets a Stalled condition (default 10m; 0: never)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(ControllerCommand(
        args.kubeconfig, args.namespace, args.image, args.uploadproxy_url, args.health_port, args.qps, args.burst,
        args.leader_elect, args.metrics_port, args.stall_timeout))))


async def run(command: ControllerCommand) -> int:
    return await run_until_stopped(lambda stop: control(command, stop))


async def control(command: ControllerCommand, stop: asyncio.Event) -> None:
    """Run the controllers until `stop` is set (or the leader Lease is lost)."""
    clock = SystemClock()
    async with await connect(command.kubeconfig, qps=command.qps, burst=command.burst) as cluster:
        identity = f"{socket.gethostname()}_{os.getpid()}"
        lock = LeaseLock(cluster, command.namespace, LEASE_NAME, identity) if command.leader_elect else None
        metrics = ControlPlaneMetrics() if command.metrics_port != -1 else None
        manager = Manager(cluster, clock=clock, leader_lock=lock, metrics=metrics.runtime if metrics else None,
                          freeze_heap=True)
        clone_tokens = CloneTokens.from_key(await ensure_signing_key(cluster, command.namespace, time.time()))
        for spec in cdi_controllers(manager.client(), clock, HttpsProgressScraper(),
                                    ControllerOptions(command.image, command.uploadproxy_url,
                                                      namespace=command.namespace, clone_tokens=clone_tokens,
                                                      metrics=metrics,
                                                      stall_timeout=timedelta(seconds=command.stall_timeout)),
                                    manager.events()):
            manager.add(spec)
        if metrics is not None:
            await observe_cluster(metrics, cluster, manager.reader)
        health, separate = _listeners(command, manager, metrics)
        await health.start()
        try:
            if separate is not None:
                await separate.start()
            await cdiconfig.ensure_config(cluster)
            where = "off" if metrics is None else f"on :{separate.port if separate is not None else health.port}"
            log.info("CDI controllers against %s (health on :%d, metrics %s)", cluster.transport.server,
                     health.port, where)
            await manager.run(stop)
        finally:
            if separate is not None:
                await separate.stop()
            await health.stop()


def _listeners(command: ControllerCommand, manager: Manager,
               metrics: ControlPlaneMetrics | None) -> tuple[HealthServer, MetricsServer | None]:
    """The health server, serving `/metrics` too when it has the metrics port; else metrics' own server.
    All interfaces: in a pod the kubelet's probes and Prometheus' scrapes come from outside the loopback."""
    # The same fixed port is one listener; two "any port" (0) requests are two listeners.
    shared = metrics is not None and (command.metrics_port is None or command.metrics_port == command.health_port != 0)
    routes = {METRICS_PATH: metrics_handler(metrics.registry)} if metrics is not None and shared else None
    health = HealthServer(lambda: manager.active, host="0.0.0.0", port=command.health_port, routes=routes)
    if metrics is None or shared or command.metrics_port is None:  # (None implies shared; for mypy)
        return health, None
    return health, MetricsServer(metrics.registry, host="0.0.0.0", port=command.metrics_port)
