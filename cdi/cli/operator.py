"""`cdi operator --kubeconfig FILE`: the CDI operator against a real Kubernetes API server.

Reconciles the cluster-scoped `CDI` resource (`cdi.operator`): the active CR (the one controlling ConfigMap
`cdi-config` in `--namespace`) gets everything `cdi manifests` renders, customized by its spec and applied
with server-side apply (`cdi.operator.manifests`), its `spec.config` written into CDIConfig, and its status
(phase, Available/Progressing/Degraded, versions) kept; deleting it honours `uninstallStrategy`. The
operator's version is $OPERATOR_VERSION, else this package's. Leader election through a Lease in
`--namespace` (upstream's operator takes one too), health endpoints on `--health-port`, and its Prometheus
metrics (`cdi.monitoring.operator`: `kubevirt_cdi_cr_ready`, its controller's reconcile and work-queue series,
`process_*`) at `/metrics` on the same port, as upstream's operator serves them on 8080, where the install's
`cdi-prometheus-metrics` Service finds it (`--metrics-port` for a listener of its own, 0 any, -1 off). In a
pod it uses the pod's service account when no kubeconfig is given. SIGINT/SIGTERM stop it gracefully.
`--print-manifests` prints what installs the operator itself and a CDI resource (`cdi.install.operatorbundle`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from cdi.api.meta import CDI_API_VERSION
from cdi.cli.daemon import run_until_stopped
from cdi.cli.installmanifests import to_yaml
from cdi.contracts.metrics import METRICS_PATH
from cdi.install import DEFAULT_IMAGE
from cdi.install.objects import install_kinds
from cdi.install.operatorbundle import cdi_resource, operator_bundle
from cdi.kube import connect
from cdi.monitoring import MetricsServer, OperatorMetrics, metrics_handler
from cdi.operator import reconciler
from cdi.operator.manifests import ManifestInstaller
from cdi.operator.versions import operator_version
from cdi.runtime.health import HealthServer
from cdi.runtime.lease import LeaseLock
from cdi.runtime.manager import Manager
from cdi.runtime.types import SystemClock

log = logging.getLogger("cdi.operator")
LEASE_NAME = "cdi-operator-leader-election-helper"
RESYNC_SECONDS = 600.0  # an installed CR is reconciled at least this often: drift reverted, certificates renewed


@dataclass(frozen=True)
class OperatorCommand:
    kubeconfig: Path | None
    namespace: str
    image: str
    health_port: int
    leader_elect: bool
    monitoring: bool
    metrics_port: int | None = None  # None (or the health port): on the health listener; -1: off; else its own


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("operator", help="run the CDI operator (installs CDI from the CDI resource)")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: the pod's service account, else $KUBECONFIG)")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "cdi"),
                        help="namespace CDI is installed in and the operator runs in (default: cdi)")
    parser.add_argument("--image", default=os.environ.get("CDI_IMAGE", DEFAULT_IMAGE),
                        help=f"the image CDI's components run (default: {DEFAULT_IMAGE})")
    parser.add_argument("--health-port", type=int, default=8080, help="port of /healthz and /readyz (0: any)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="port of /metrics (default: the health port, 8080 as upstream; 0: any; -1: off)")
    parser.add_argument("--no-leader-elect", dest="leader_elect", action="store_false",
                        help="reconcile without taking the leader Lease (one replica only)")
    parser.add_argument("--monitoring", action="store_true",
                        help="also install the PrometheusRule and ServiceMonitor "
                             "(needs the prometheus-operator's CRDs)")
    parser.add_argument("--print-manifests", action="store_true",
                        help="print what installs the operator (Namespace, CDI CRD, RBAC, Deployment) and a CDI "
                             "resource, for kubectl apply --server-side -f -, and exit")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, home: Path) -> int:
    if args.print_manifests:
        sys.stdout.write(to_yaml([*operator_bundle(args.namespace, args.image), cdi_resource()]))
        return 0
    return asyncio.run(run(OperatorCommand(args.kubeconfig, args.namespace, args.image, args.health_port,
                                           args.leader_elect, args.monitoring, args.metrics_port)))


async def run(command: OperatorCommand) -> int:
    return await run_until_stopped(lambda stop: operate(command, stop))


async def operate(command: OperatorCommand, stop: asyncio.Event) -> None:
    clock = SystemClock()
    version = operator_version()
    async with await connect(command.kubeconfig, kinds=install_kinds()) as cluster:
        identity = f"{socket.gethostname()}_{os.getpid()}"
        lock = LeaseLock(cluster, command.namespace, LEASE_NAME, identity) if command.leader_elect else None
        metrics = None
        if command.metrics_port != -1:
            metrics = OperatorMetrics(lambda: manager.reader(CDI_API_VERSION, "CDI").list())
        manager = Manager(cluster, clock=clock, leader_lock=lock, metrics=metrics.runtime if metrics else None)
        installer = ManifestInstaller(cluster, namespace=command.namespace, image=command.image, clock=clock.now,
                                      monitoring=command.monitoring)
        for spec in reconciler.controllers(manager.client(), clock, installer, namespace=command.namespace,
                                           version=version, resync=RESYNC_SECONDS):
            manager.add(spec)
        health, separate = _listeners(command, manager, metrics)
        await health.start()
        try:
            if separate is not None:
                await separate.start()
            where = "off" if metrics is None else f"on :{separate.port if separate is not None else health.port}"
            log.info("CDI operator %s against %s (namespace %s, health on :%d, metrics %s)", version,
                     cluster.transport.server, command.namespace, health.port, where)
            await manager.run(stop)
        finally:
            if separate is not None:
                await separate.stop()
            await health.stop()


def _listeners(command: OperatorCommand, manager: Manager,
               metrics: OperatorMetrics | None) -> tuple[HealthServer, MetricsServer | None]:
    """The health server, serving `/metrics` too unless the metrics have a port of their own (as `cdi
    controller`). All interfaces: in a pod the kubelet's probes and Prometheus' scrapes come from outside."""
    shared = metrics is not None and (command.metrics_port is None or command.metrics_port == command.health_port != 0)
    routes = {METRICS_PATH: metrics_handler(metrics.registry)} if metrics is not None and shared else None
    health = HealthServer(lambda: manager.active, host="0.0.0.0", port=command.health_port, routes=routes)
    if metrics is None or shared or command.metrics_port is None:
        return health, None
    return health, MetricsServer(metrics.registry, host="0.0.0.0", port=command.metrics_port)
