"""`cdi node --kubeconfig FILE`: this machine as a node of a Kubernetes cluster that has no kubelet.

It runs the node agent (`cdi.embedded.nodeagent`) against the real API server: it registers the Node,
binds unscheduled pods to it and runs them as local processes (with their volumes and secrets), and
provisions local volumes for claims of its StorageClasses — the same code `cdi serve` runs on the
embedded store. Its state (pod directories and logs, the storage pool) lives under the home directory
(`--home`/`CDI_HOME`), which one `cdi node` holds at a time. With `cdi controller` against the same
API server, a DataVolume imports end to end on a real cluster. SIGINT/SIGTERM stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from cdi.cli.daemon import run_until_stopped
from cdi.embedded.nodeagent import add_node_agent
from cdi.kube import connect
from cdi.runtime.manager import Manager
from cdi.runtime.types import SystemClock

log = logging.getLogger("cdi.node")
NODE_LOCK = "node.lock"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("node", help="run this machine as a node of a Kubernetes cluster without kubelet")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--pod-backoff", type=float, default=10.0,
                        help="first crash-loop back-off of a failing pod, in seconds (kubelet: 10)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args.kubeconfig, home, args.pod_backoff)))


async def run(kubeconfig: Path | None, home: Path, pod_backoff: float) -> int:
    return await run_until_stopped(lambda stop: serve_node(kubeconfig, home, stop, pod_backoff=pod_backoff))


async def serve_node(kubeconfig: Path | None, home: Path, stop: asyncio.Event, *, pod_backoff: float = 10.0) -> None:
    home.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    async with await connect(kubeconfig) as cluster:
        manager = Manager(cluster, clock=clock, lock_path=home / NODE_LOCK)
        runner = await add_node_agent(manager, cluster, home, clock, backoff_base=pod_backoff)
        log.info("node agent for %s serving %s", cluster.transport.server, home)
        try:
            await manager.run(stop)
        finally:
            await runner.close()
