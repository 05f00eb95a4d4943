"""The node agent: this machine's volumes and pods behind the `Cluster` seam, on either backend.

What kubelet, kube-scheduler and a local CSI provisioner do for one node: `add_node_agent` opens the
storage pool, makes sure the default StorageClasses exist, re-attaches the volumes PVs record, registers
the `Node` object (Ready, with its address; lifting the `not-ready` taint the API server's
TaintNodesByCondition admission puts on every new Node, as the node lifecycle controller would: a
cluster without kubelets may not run one, and the pod runner's scheduler honours taints), and adds the
volume provisioner, the snapshot controller (where the cluster serves VolumeSnapshots), the pod
runner and the node's heartbeat (`cdi.embedded.nodeheartbeat`: its Lease in `kube-node-lease`, renewed
every 10 s, and its conditions, as kubelet keeps them) to a manager. `cdi serve` runs it on the
embedded store beside CDI's controllers; `cdi node --kubeconfig` runs it alone against a real API
server that has no kubelet, so that a real cluster plus `cdi controller` and `cdi node` imports a disk
with real worker processes. Both read the cluster directly (no cache), as kubelet and a provisioner
read their own state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded import snapshots as local_snapshots
from cdi.embedded import volumes as local_volumes
from cdi.embedded.nodeheartbeat import HeartbeatSettings, NodeHeartbeat, Pressure, node_conditions, observe_pressure
from cdi.embedded.pods import controller as local_pods
from cdi.embedded.pods.node import HOST_IP, NODE_NAME
from cdi.embedded.pods.processes import Launcher
from cdi.embedded.pods.runner import PodRunner
from cdi.embedded.snapshots import SNAPSHOT_API
from cdi.embedded.volumes.keys import HOSTNAME_LABEL
from cdi.runtime.manager import Manager
from cdi.runtime.types import Clock, ControllerSpec

log = logging.getLogger("cdi.node")
POOL_DIR = "pools/default"
HEARTBEAT = "node-heartbeat"  # the controller renewing the node Lease and reporting the Node's conditions
# The taints kube-controller-manager's node lifecycle controller keeps in step with the Ready condition
# (Ready False / Unknown); a Node that is Ready carries neither.
READY_CONDITION_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def node_object(now: datetime, kubelet_port: int = 0, *, conditions: list[Object] | None = None,
                pressure: Pressure | None = None) -> Object:
    """The Node this agent plays kubelet for, Ready; with the port of its kubelet API when it serves one
    (`cdi.embedded.kubeletapi`: the API server sends `kubectl logs` there). Its conditions are kubelet's
    four (`cdi.embedded.nodeheartbeat.node_conditions`), carried on from `conditions`, the stored ones."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {HOSTNAME_LABEL: NODE_NAME, "kubernetes.io/os": "linux",
                                                   "node.kubernetes.io/instance-type": "pycdi-node-agent"}},
        "spec": {},
        "status": {
            "conditions": node_conditions(conditions or [], pressure or Pressure(), now),
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        },
    }


def ready_taints(taints: list[Object]) -> list[Object]:
    """The Node's taints once it is Ready: without those of a Node that is not (`READY_CONDITION_TAINTS`,
    any effect), as the node lifecycle controller leaves them; every other taint is kept, in order."""
    return [taint for taint in taints if taint.get("key") not in READY_CONDITION_TAINTS]


async def register_node(cluster: Cluster, now: datetime, kubelet_port: int = 0,
                        pressure: Pressure | None = None) -> None:
    """Create the Node if missing, mark it Ready (the status subresource, as kubelet does; conditions
    already stored keep their transition times) and lift the taints of a Node that is not Ready (the node
    lifecycle controller's part: a real API server taints every new Node `not-ready`, and the test
    clusters run no such controller)."""
    try:
        stored = await cluster.get("v1", "Node", NODE_NAME)
    except NotFound:
        stored = {}
        try:
            await cluster.create({k: v for k, v in node_object(now).items() if k != "status"})
        except AlreadyExists:
            pass
    desired = node_object(now, kubelet_port, conditions=(stored.get("status") or {}).get("conditions"),
                          pressure=pressure)
    node = await cluster.patch_status("v1", "Node", NODE_NAME, {"status": desired["status"]})
    taints = list((node.get("spec") or {}).get("taints") or [])
    if (kept := ready_taints(taints)) != taints:
        # resourceVersion: a taint someone adds meanwhile is not dropped by this whole-list write (Conflict).
        version = node["metadata"]["resourceVersion"]
        await cluster.patch("v1", "Node", NODE_NAME, {"metadata": {"resourceVersion": version},
                                                      "spec": {"taints": kept}})
        log.info("lifted taints %s: the Node is Ready", ", ".join(
            sorted({str(t.get("key")) for t in taints} - {str(t.get("key")) for t in kept})))


async def add_node_agent(manager: Manager, cluster: Cluster, home: Path, clock: Clock, *,
                         backoff_base: float = 10.0, backoff_cap: float = 300.0, kubelet_port: int = 0,
                         launcher: Launcher | None = None, heartbeat: HeartbeatSettings | None = None) -> PodRunner:
    """Prepare this node and add its controllers to `manager`; the returned runner must be closed.
    `launcher` runs the pods' containers (default: as processes); `heartbeat` sets the Lease duration and
    the status report frequency (default: kubelet's, 40 s and 5 min)."""
    pool = await local_volumes.open_pool(home / POOL_DIR)
    created = await local_volumes.ensure_default_storage(cluster)
    if created:
        log.info("created %s", ", ".join(created))
    report = await local_volumes.ensure_all_attached(cluster, pool)
    log.info("volumes re-attached: %d, failed: %d", len(report.attached), len(report.failed))
    def observe() -> Pressure:
        return observe_pressure(home)

    await register_node(cluster, clock.now(), kubelet_port, await asyncio.to_thread(observe))
    manager.add(ControllerSpec(name=HEARTBEAT, api_version="v1", kind="Node", workers=1,
                               reconciler=NodeHeartbeat(cluster, NODE_NAME, clock, observe, heartbeat)))
    runner = PodRunner(cluster, home, clock=clock, backoff_base=backoff_base, backoff_cap=backoff_cap,
                       launcher=launcher)
    for spec in local_volumes.controllers(cluster, pool, clock):
        manager.add(spec)
    if await cluster.served(SNAPSHOT_API, "VolumeSnapshot") and \
            await cluster.served(SNAPSHOT_API, "VolumeSnapshotContent"):
        for spec in local_snapshots.controllers(cluster, pool, clock):
            manager.add(spec)
    else:
        log.info("the cluster does not serve %s VolumeSnapshots: no snapshot controller", SNAPSHOT_API)
    for spec in local_pods.controllers(cluster, runner):
        runner.on_change = manager.add(spec).queue.add
    return runner
