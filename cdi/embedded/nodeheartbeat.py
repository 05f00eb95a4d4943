"""Node heartbeats as kubelet sends them: the node Lease, renewed every 10 s, and the Node's conditions.

kubelet tells the control plane that its node is alive in two ways (KEP-589, "efficient node
heartbeats"). It renews a `coordination.k8s.io/v1` Lease named after the node in `kube-node-lease`
every quarter of `leaseDurationSeconds` (40 s → every 10 s), holder = the node's name, owned by the
Node (an ownerReference without `controller`, set once the Node's uid is known, so the garbage
collector removes the Lease with the Node). And it writes the Node's `status.conditions` — Ready and
its eviction manager's MemoryPressure, DiskPressure and PIDPressure — at once when one of them
changes, else every `nodeStatusReportFrequency` (5 min) so that `lastHeartbeatTime` moves. The node
lifecycle controller reads both to decide whether a node has gone.

Observe → plan → apply. `observe_pressure` reads this machine's available memory and the filesystem
holding the node's state and checks kubelet's default hard eviction thresholds (memory.available <
100Mi, nodefs.available < 10%, nodefs.inodesFree < 5%; kubelet has no default PID threshold, so
PIDPressure stays False). `plan_heartbeat` is a pure function of the Node, the Lease, that
observation and the time: what to write, and how long until something is due again.
`NodeHeartbeat` is the reconciler the node agent (`cdi.embedded.nodeagent`) registers for its own
Node, on the embedded store (`cdi serve`) and on a real API server (`cdi node`) alike; it reads both
objects afresh on every run, so a restarted agent, a deleted Lease or a Lease someone else wrote is
picked up where it is. A failed read or write is logged and retried soon (1 s, doubling up to the
renew interval); it never stops the agent. On shutdown the manager stops the reconciler and the Lease
is left to expire, as kubelet leaves it (it is not deleted).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cdi.cluster.errors import ApiError, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.runtime.lease import LEASE_API
from cdi.runtime.types import DONE, Clock, Key, Result

log = logging.getLogger("cdi.node")

NODE_LEASE_NAMESPACE = "kube-node-lease"
RENEW_FRACTION = 0.25  # kubelet's nodeLeaseRenewIntervalFraction
RETRY_FIRST = 1.0  # seconds before retrying a failed heartbeat; doubles up to the renew interval
SLACK = 0.05  # a timer that fires this much early still counts as due
# kubelet's default hard eviction thresholds (pkg/kubelet/eviction/defaults_linux.go).
MEMORY_AVAILABLE_MIN = 100 << 20
NODEFS_AVAILABLE_MIN = 0.10
NODEFS_INODES_FREE_MIN = 0.05


@dataclass(frozen=True)
class HeartbeatSettings:
    """kubelet's configuration fields of the same names."""

    node_lease_duration_seconds: int = 40
    node_status_report_frequency: float = 300.0
    namespace: str = NODE_LEASE_NAMESPACE

    def __post_init__(self) -> None:
        if self.node_lease_duration_seconds <= 0:
            raise ValueError(f"the node lease duration must be positive, not {self.node_lease_duration_seconds}")
        if self.node_status_report_frequency < 1:
            # lastHeartbeatTime has whole seconds: a shorter period would rewrite the Node without pause.
            raise ValueError(f"the node status report frequency must be at least 1s, not "
                             f"{self.node_status_report_frequency}s")

    @property
    def renew_interval(self) -> float:
        return self.node_lease_duration_seconds * RENEW_FRACTION


@dataclass(frozen=True)
class Pressure:
    """Which eviction signals are past their threshold."""

    memory: bool = False
    disk: bool = False
    pid: bool = False


@dataclass(frozen=True)
class HeartbeatPlan:
    lease: Object | None  # the Lease to write (create when it has no resourceVersion), or None
    conditions: list[Object] | None  # the Node's conditions to write, or None
    next_check: float  # seconds until something is due again


# type → (reason, message) when True, and when False: kubelet's wording (pkg/kubelet/nodestatus/setters.go).
PRESSURE_CONDITIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "MemoryPressure": (("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
                       ("KubeletHasSufficientMemory", "kubelet has sufficient memory available")),
    "DiskPressure": (("KubeletHasDiskPressure", "kubelet has disk pressure"),
                     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")),
    "PIDPressure": (("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
                    ("KubeletHasSufficientPID", "kubelet has sufficient PID available")),
}
READY = ("Ready", "True", "KubeletReady", "the pycdi node agent is posting ready status")


def wanted_conditions(pressure: Pressure) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the conditions kubelet sets, in kubelet's order."""
    signals = {"MemoryPressure": pressure.memory, "DiskPressure": pressure.disk, "PIDPressure": pressure.pid}
    wanted = []
    for kind, (when_true, when_false) in PRESSURE_CONDITIONS.items():
        reason, message = when_true if signals[kind] else when_false
        wanted.append((kind, "True" if signals[kind] else "False", reason, message))
    return [*wanted, READY]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def node_conditions(previous: Sequence[Object], pressure: Pressure, now: datetime) -> list[Object]:
    """The Node's conditions with this heartbeat: kubelet's four with `lastHeartbeatTime` now and
    `lastTransitionTime` kept while the status stays; conditions others own (NetworkUnavailable) are kept."""
    stamp = _stamp(now)
    before = {str(c.get("type")): c for c in previous if isinstance(c, dict)}
    ours: dict[str, Object] = {}
    for kind, status, reason, message in wanted_conditions(pressure):
        prior = before.get(kind) or {}
        same = prior.get("status") == status and prior.get("lastTransitionTime")
        ours[kind] = {"type": kind, "status": status, "lastHeartbeatTime": stamp,
                      "lastTransitionTime": prior["lastTransitionTime"] if same else stamp,
                      "reason": reason, "message": message}
    kept = [ours.pop(str(c.get("type")), c) for c in previous if isinstance(c, dict)]
    return kept + list(ours.values())


def _status_wait(previous: Sequence[Object], pressure: Pressure, now: datetime, settings: HeartbeatSettings) -> float:
    """Seconds until the Node's conditions must be written: 0 when one differs from what is observed."""
    before = {str(c.get("type")): c for c in previous if isinstance(c, dict)}
    oldest: datetime | None = None
    for kind, status, reason, message in wanted_conditions(pressure):
        prior = before.get(kind)
        beat = _parse((prior or {}).get("lastHeartbeatTime"))
        if prior is None or beat is None or (prior.get("status"), prior.get("reason"), prior.get("message")) != (
                status, reason, message):
            return 0.0
        oldest = beat if oldest is None else min(oldest, beat)
    assert oldest is not None
    return (oldest + timedelta(seconds=settings.node_status_report_frequency) - now).total_seconds()


def _lease_wait(lease: Object | None, name: str, node_uid: str | None, now: datetime,
                settings: HeartbeatSettings) -> float:
    """Seconds until the Lease must be renewed: 0 when it is missing, not ours, or lacks the Node owner."""
    if lease is None:
        return 0.0
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime"))
    owned = bool((lease.get("metadata") or {}).get("ownerReferences")) or node_uid is None
    if renewed is None or not owned or spec.get("holderIdentity") != name or \
            spec.get("leaseDurationSeconds") != settings.node_lease_duration_seconds:
        return 0.0
    return (renewed + timedelta(seconds=settings.renew_interval) - now).total_seconds()


def renewed_lease(lease: Object | None, name: str, node_uid: str | None, now: datetime,
                  settings: HeartbeatSettings) -> Object:
    """kubelet's node Lease renewed now: holder = the node, its lease duration, and the Node as owner
    once its uid is known (kubelet sets the owner only when there is none)."""
    renewed: Object = copy.deepcopy(lease) if lease is not None else {
        "apiVersion": LEASE_API, "kind": "Lease", "metadata": {"name": name, "namespace": settings.namespace}}
    spec = renewed.setdefault("spec", {})
    spec.update({"holderIdentity": name, "leaseDurationSeconds": settings.node_lease_duration_seconds,
                 "renewTime": _micro_stamp(now)})
    metadata = renewed.setdefault("metadata", {})
    if node_uid is not None and not metadata.get("ownerReferences"):
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    return renewed


def plan_heartbeat(name: str, node: Object | None, lease: Object | None, pressure: Pressure, now: datetime,
                   settings: HeartbeatSettings) -> HeartbeatPlan:
    """What this heartbeat writes, given the Node and Lease as read now (None: absent). Pure.

    The Lease is renewed when a renew interval has passed since its renewTime (or it is missing, held by
    another identity, or not yet owned by the Node); the conditions are written when one changes or the
    report frequency has passed since their oldest heartbeat (never for a missing Node: kubelet does not
    re-register a deleted Node while it runs). The next check comes at the earlier of the two, and no later
    than a renew interval, so pressure is re-observed at least that often.
    """
    uid = str((node or {}).get("metadata", {}).get("uid") or "") or None
    lease_wait = _lease_wait(lease, name, uid, now, settings)
    write_lease = lease_wait <= SLACK
    previous = list(((node or {}).get("status") or {}).get("conditions") or [])
    status_wait = _status_wait(previous, pressure, now, settings) if node is not None else settings.renew_interval
    write_status = node is not None and status_wait <= SLACK
    waits = [settings.renew_interval if write_lease else lease_wait,
             settings.node_status_report_frequency if write_status else status_wait, settings.renew_interval]
    return HeartbeatPlan(
        lease=renewed_lease(lease, name, uid, now, settings) if write_lease else None,
        conditions=node_conditions(previous, pressure, now) if write_status else None,
        next_check=max(SLACK, min(waits)))


def pressure_of(memory_available: int | None, nodefs_available: float, nodefs_inodes_free: float) -> Pressure:
    """The eviction signals against kubelet's default thresholds (memory unknown: no pressure). Pure."""
    return Pressure(memory=memory_available is not None and memory_available < MEMORY_AVAILABLE_MIN,
                    disk=nodefs_available < NODEFS_AVAILABLE_MIN or nodefs_inodes_free < NODEFS_INODES_FREE_MIN)


def _memory_available(meminfo: Path) -> int | None:
    """MemAvailable of /proc/meminfo in bytes (kubelet's memory.available comes from the same counters)."""
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        field, _, value = line.partition(":")
        if field == "MemAvailable" and value.split():
            return int(value.split()[0]) * 1024
    return None


def observe_pressure(state: Path, meminfo: Path = Path("/proc/meminfo")) -> Pressure:
    """This machine's eviction signals: memory, and the filesystem holding the node's state (`state`)."""
    fs = os.statvfs(state)
    available = fs.f_bavail / fs.f_blocks if fs.f_blocks else 1.0
    inodes = fs.f_favail / fs.f_files if fs.f_files else 1.0
    return pressure_of(_memory_available(meminfo), available, inodes)


class NodeHeartbeat:
    """The reconciler of the agent's own Node: renews its Lease and reports its conditions (`plan_heartbeat`)."""

    def __init__(self, cluster: Cluster, name: str, clock: Clock, observe: Callable[[], Pressure],
                 settings: HeartbeatSettings | None = None) -> None:
        self._cluster, self._name, self._clock, self._observe = cluster, name, clock, observe
        self._settings = settings or HeartbeatSettings()
        self._failures = 0
        self._pressure = Pressure()
        self._node_missing = False

    async def reconcile(self, key: Key) -> Result:
        if key.name != self._name or key.namespace:
            return DONE
        try:
            wait = await self._beat()
        except ApiError as e:
            self._failures += 1
            delay = min(RETRY_FIRST * 2 ** (self._failures - 1), self._settings.renew_interval)
            log.warning("node heartbeat of %s failed (%s: %s); retrying in %.0fs", self._name, e.reason, e.message,
                        delay)
            return Result(requeue_after=delay)
        if self._failures:
            log.info("node heartbeat of %s works again after %d failure(s)", self._name, self._failures)
        self._failures = 0
        return Result(requeue_after=wait)

    async def _beat(self) -> float:
        node = await self._read("v1", "Node", None)
        lease = await self._read(LEASE_API, "Lease", self._settings.namespace)
        pressure = await self._observed()
        plan = plan_heartbeat(self._name, node, lease, pressure, self._clock.now(), self._settings)
        if plan.lease is not None:
            await self._write_lease(plan.lease)
        if plan.conditions is not None:
            await self._cluster.patch_status("v1", "Node", self._name, {"status": {"conditions": plan.conditions}})
        if (node is None) != self._node_missing:
            self._node_missing = node is None
            if node is None:
                log.warning("the Node %s does not exist: its conditions are not reported (restart the agent to "
                            "register it again)", self._name)
        return plan.next_check

    async def _read(self, api_version: str, kind: str, namespace: str | None) -> Object | None:
        try:
            return await self._cluster.get(api_version, kind, self._name, namespace)
        except NotFound:
            return None

    async def _observed(self) -> Pressure:
        try:
            pressure = await asyncio.to_thread(self._observe)
        except OSError as e:
            log.warning("cannot observe memory and disk pressure (%s): reporting what was last seen", e)
            return self._pressure
        if pressure != self._pressure:
            log.info("node pressure now: memory %s, disk %s, PIDs %s", pressure.memory, pressure.disk, pressure.pid)
        self._pressure = pressure
        return pressure

    async def _write_lease(self, lease: Object) -> None:
        if lease["metadata"].get("resourceVersion"):
            await self._cluster.update(lease)  # optimistic: a Conflict is retried with a fresh read
            return
        await self._cluster.create(lease)
        log.info("created the node Lease %s/%s", self._settings.namespace, self._name)
