"""`PodRunner`: the embedded mode's kubelet (and scheduler) for the one local node, as a reconciler.

Keyed by Pod, level-triggered: each `reconcile` reads the pod and acts on the difference between it
and the processes this runner has:

- gone from the store → its processes are killed and its directory removed (`_forget`);
- being deleted → SIGTERM to each container's process group, SIGKILL after
  `terminationGracePeriodSeconds`, a final status, then our finalizer and the directory go;
- not yet on a node → scheduled (`scheduling`): WaitForFirstConsumer claims get the selected-node
  annotation, and the pod is bound once its claims are Bound;
- on our node → each container that should run is started (`starter`), exited ones are restarted
  by the restart policy with crash-loop back-off (`restarts`), and the status is written as kubelet
  writes it (`status`). The pod holds our finalizer while it has processes. A running pod's Secret and
  ConfigMap volumes are brought up to date every `refresh_after` seconds (kubelet's sync period).

A process that exits calls `on_change(key)` (the manager wires it to the work queue), so its pod is
reconciled again. Containers outlive the runner (the process launcher's shim, podman's conmon):
after a restart, the first reconcile of each pod re-attaches to the runs an earlier runner recorded
(`kubelet.adopt`, `reattach`), so an import or upload in flight carries on, and runs that cannot be
found count as killed and restart by their policy (`records.adopt`). `detach` lets go of every
container and leaves it running (`cdi serve` and `cdi node` stopping, or being upgraded); `close`
kills them (tests, and `--stop-pods-on-exit`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods import orphans
from cdi.embedded.pods.kubelet import Kubelet
from cdi.embedded.pods.node import ANN_SELECTED_NODE, NODE_NAME, SCHEDULER
from cdi.embedded.pods.paths import PodPaths
from cdi.embedded.pods.podwrites import PodWriter
from cdi.embedded.pods.processes import Launcher, ProcessLauncher
from cdi.embedded.pods.records import PodRecord
from cdi.embedded.pods.restarts import BackoffPolicy
from cdi.embedded.pods.scheduling import UNSCHEDULABLE, observe_claims, observe_node_fit, plan_scheduling
from cdi.embedded.pods.spec import PodInfo, PodSpecError, parse_pod
from cdi.embedded.pods.starter import ContainerStarter, default_base_env
from cdi.embedded.pods.status import scheduled_condition
from cdi.embedded.semantics import format_time
from cdi.runtime.types import DONE, Clock, Key, Result, SystemClock


class PodRunner:
    """Runs the pods of the local node as child processes; `reconcile` is its `Reconciler` face."""

    def __init__(self, cluster: Cluster, state_dir: Path, *, clock: Clock | None = None,
                 on_change: Callable[[Key], None] | None = None, backoff_base: float = 10.0,
                 backoff_cap: float = 300.0, retry_after: float = 5.0, launcher: Launcher | None = None,
                 base_env: Mapping[str, str] | None = None, refresh_after: float = 60.0) -> None:
        self._cluster = cluster
        self._state_dir = Path(state_dir).absolute()
        self._clock = clock or SystemClock()
        self._on_change = on_change
        self._retry_after = retry_after
        self._records: dict[Key, PodRecord] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._claim_users: dict[tuple[str, str], set[Key]] = {}
        self._swept = False
        self._sweep_lock = asyncio.Lock()
        starter = ContainerStarter(cluster, self._state_dir, launcher or ProcessLauncher(),
                                   default_base_env(os.environ) if base_env is None else base_env)
        self._writer = PodWriter(cluster, self._clock)
        self._kubelet = Kubelet(cluster, self._state_dir, starter, self._writer, self._clock,
                                BackoffPolicy(backoff_base, backoff_cap), retry_after, self._changed, refresh_after)

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def cluster(self) -> Cluster:
        return self._cluster

    @property
    def on_change(self) -> Callable[[Key], None] | None:
        """Called with a pod's key when one of its processes exits (the manager's queue `add`)."""
        return self._on_change

    @on_change.setter
    def on_change(self, callback: Callable[[Key], None] | None) -> None:
        self._on_change = callback

    def pods_using_claim(self, namespace: str, claim: str) -> list[Key]:
        """The pods this runner has seen referring to a claim (for the PVC watch)."""
        return sorted(self._claim_users.get((namespace, claim), ()))

    async def reconcile(self, key: Key) -> Result:
        await self._sweep_once()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            return await self._reconcile(key)

    async def close(self) -> None:
        """Kill every container this runner runs, without touching the store."""
        self._on_change = None
        records = list(self._records.values())
        self._records.clear()
        await asyncio.gather(*(self._kubelet.kill_now(record) for record in records))

    async def detach(self) -> int:
        """Stop watching every container and leave it running, for the next runner to re-attach to, without
        touching the store (as if this runner died); how many were left running."""
        self._on_change = None
        records = list(self._records.values())
        self._records.clear()
        return sum([await self._kubelet.let_go(record) for record in records])

    def _changed(self, key: Key) -> None:
        if self._on_change is not None:
            self._on_change(key)

    async def _reconcile(self, key: Key) -> Result:
        try:
            obj = await self._cluster.get("v1", "Pod", key.name, key.namespace)
        except NotFound:
            return await self._forget(key)
        try:
            pod = parse_pod(obj)
        except PodSpecError as e:
            await self._writer.event(obj, "Warning", "FailedCreate", str(e), SCHEDULER)
            return DONE
        record = self._records.get(key)
        if record is not None and record.uid != pod.uid:
            await self._forget(key)  # a new pod under the old name: the old one's processes go first
        self._remember_claims(key, pod)
        if pod.node_name and pod.node_name != NODE_NAME:
            return DONE  # another node's pod
        if pod.deleting:
            if not pod.node_name:
                return DONE  # never ours: nothing ran
            record = await self._record(key, pod, obj)
            if await self._kubelet.terminate(obj, pod, record):
                self._records.pop(key, None)
                return DONE
            return Result(requeue_after=min(self._retry_after, max(pod.grace_seconds, 0.1)))
        if not pod.node_name:
            scheduled = await self._schedule(obj, pod)
            if scheduled is None:
                return Result(requeue_after=self._retry_after)
            obj, pod = scheduled, parse_pod(scheduled)
        return await self._kubelet.sync(obj, pod, await self._record(key, pod, obj))

    async def _record(self, key: Key, pod: PodInfo, obj: Object) -> PodRecord:
        """What we know of the pod's containers; when we know nothing, what an earlier runner left."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = await self._kubelet.adopt(pod, obj)
        return record

    async def _schedule(self, obj: Object, pod: PodInfo) -> Object | None:
        """Bind the pod to our node when its claims allow it (the bound pod), else say why (None)."""
        plan = plan_scheduling(await observe_claims(self._cluster, pod), await observe_node_fit(self._cluster, obj))
        for claim in plan.select_node_on:
            await self._cluster.patch("v1", "PersistentVolumeClaim", claim,
                                      {"metadata": {"annotations": {ANN_SELECTED_NODE: NODE_NAME}}}, pod.namespace)
        status = obj.get("status") or {}
        now = _timestamp(self._clock)
        if not plan.bind:
            old: Object = next((c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"), {})
            if old.get("message") != plan.message or status.get("phase") != "Pending":
                condition = scheduled_condition("False", now, UNSCHEDULABLE, plan.message)
                await self._cluster.patch_status("v1", "Pod", pod.name, {"status": {
                    "phase": "Pending", "conditions": [condition]}}, pod.namespace)
                await self._writer.event(obj, "Warning", "FailedScheduling", plan.message, SCHEDULER)
            return None
        await self._cluster.create({"apiVersion": "v1", "kind": "Binding",
                                    "metadata": {"name": pod.name, "namespace": pod.namespace},
                                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}})
        bound = await self._cluster.patch_status("v1", "Pod", pod.name, {"status": {
            "phase": "Pending", "conditions": [scheduled_condition("True", now)]}}, pod.namespace)
        await self._writer.event(obj, "Normal", "Scheduled",
                                 f"Successfully assigned {pod.namespace}/{pod.name} to {NODE_NAME}", SCHEDULER)
        return bound

    async def _forget(self, key: Key) -> Result:
        """The pod is gone: kill what is left of it and remove its directory."""
        record = self._records.pop(key, None)
        for users in self._claim_users.values():
            users.discard(key)
        paths = PodPaths(self._state_dir, key.namespace, key.name)
        uid = record.uid if record is not None else _read_uid(paths)
        if record is not None:
            await self._kubelet.kill_now(record)
        if uid:
            await asyncio.to_thread(_kill_marked, self._state_dir, {uid})
        if not record or _read_uid(paths) in ("", uid):
            shutil.rmtree(paths.root, ignore_errors=True)
        return DONE

    async def _sweep_once(self) -> None:
        """On the first reconcile: clear out directories and processes of pods deleted while we were down."""
        async with self._sweep_lock:
            if not self._swept:
                pods = (await self._cluster.list("v1", "Pod")).items
                live = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]): p["metadata"].get("uid", "")
                        for p in pods}
                await asyncio.to_thread(_sweep, self._state_dir, live)
                self._swept = True

    def _remember_claims(self, key: Key, pod: PodInfo) -> None:
        for claim in pod.claim_names():
            self._claim_users.setdefault((pod.namespace, claim), set()).add(key)

def _timestamp(clock: Clock) -> str:
    return format_time(clock.now())


def _read_uid(paths: PodPaths) -> str:
    try:
        return paths.uid_file.read_text().strip()
    except OSError:
        return ""


def _kill_marked(state_dir: Path, uids: set[str]) -> None:
    orphans.kill_all(orphans.marked_processes(state_dir, uids))


def _sweep(state_dir: Path, live: Mapping[tuple[str, str], str]) -> None:
    live_uids = set(live.values())
    orphans.kill_all({pid for pid, uid in orphans.marked_processes(state_dir).items() if uid not in live_uids})
    root = state_dir / "pods"
    if not root.is_dir():
        return
    for namespace_dir in root.iterdir():
        for pod_dir in namespace_dir.iterdir() if namespace_dir.is_dir() else ():
            if (namespace_dir.name, pod_dir.name) not in live:
                shutil.rmtree(pod_dir, ignore_errors=True)

