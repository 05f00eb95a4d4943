"""The node heartbeat as kubelet keeps it (`cdi.embedded.nodeheartbeat`): the pure plan as tables — when the
Lease is renewed and what it holds, when the Node's conditions are written and what they say — then the
reconciler on the embedded store with a fake clock: the Lease appears, is renewed every 10 s and not in
between, and a failing API server is retried without stopping the agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import ServerError
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.nodeagent import register_node
from cdi.embedded.nodeheartbeat import (
    MEMORY_AVAILABLE_MIN,
    HeartbeatSettings,
    NodeHeartbeat,
    Pressure,
    observe_pressure,
    plan_heartbeat,
    pressure_of,
)
from cdi.runtime.types import Key
from tests.runtime.clock import FakeClock

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
NAME = "pycdi-node"
DEFAULTS = HeartbeatSettings()
OWNER = [{"apiVersion": "v1", "kind": "Node", "name": NAME, "uid": "node-uid"}]


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def lease(renewed: float, holder: str = NAME, owners: list[dict[str, str]] | None = OWNER,
          duration: int = 40) -> Object:
    metadata: dict[str, Any] = {"name": NAME, "namespace": "kube-node-lease", "resourceVersion": "7"}
    if owners:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": at(renewed)}}


def condition(kind: str, status: str, reason: str, message: str, beat: float, moved: float) -> Object:
    return {"type": kind, "status": status, "lastHeartbeatTime": stamp(beat), "lastTransitionTime": stamp(moved),
            "reason": reason, "message": message}


def healthy(beat: float, moved: float = -3600) -> list[Object]:
    return [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                  beat, moved),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", beat, moved),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                  beat, moved),
        condition("Ready", "True", "KubeletReady", "the pycdi node agent is posting ready status", beat, moved),
    ]


def node(conditions: list[Object] | None = None, uid: str = "node-uid") -> Object:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NAME, "uid": uid},
            "status": {"conditions": conditions or []}}


# --- the Lease ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stored", "renew", "next_check"), [
    pytest.param(None, True, 10.0, id="missing: created"),
    pytest.param(lease(renewed=-4), False, 6.0, id="renewed 4s ago: not yet"),
    pytest.param(lease(renewed=-9.9), False, 0.1, id="due in 100ms: then"),
    pytest.param(lease(renewed=-9.99), True, 10.0, id="due in 10ms: now (a timer's slack)"),
    pytest.param(lease(renewed=-10), True, 10.0, id="renewed 10s ago: renewed"),
    pytest.param(lease(renewed=-120), True, 10.0, id="expired: renewed"),
    pytest.param(lease(renewed=-2, holder="someone-else"), True, 10.0, id="another holder: taken back"),
    pytest.param(lease(renewed=-2, owners=None), True, 10.0, id="no owner yet: the Node is set"),
    pytest.param(lease(renewed=-2, duration=15), True, 10.0, id="another duration: ours"),
    pytest.param(lease(renewed=30), False, 10.0, id="renewed in the future (skew): at most one interval"),
])
def test_the_lease_is_renewed_every_quarter_of_its_duration(stored: Object | None, renew: bool,
                                                            next_check: float) -> None:
    plan = plan_heartbeat(NAME, node(healthy(beat=-1)), stored, Pressure(), NOW, DEFAULTS)
    assert (plan.lease is not None) == renew
    assert plan.next_check == pytest.approx(next_check)
    assert plan.conditions is None


def test_a_new_lease_is_kubelets() -> None:
    plan = plan_heartbeat(NAME, node(healthy(beat=-1)), None, Pressure(), NOW, DEFAULTS)
    assert plan.lease == {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME, "namespace": "kube-node-lease", "ownerReferences": OWNER},
        "spec": {"holderIdentity": NAME, "leaseDurationSeconds": 40, "renewTime": "2026-12-02T12:00:00.000000Z"},
    }


def test_a_renewal_keeps_the_version_and_moves_only_the_renew_time() -> None:
    renewed = plan_heartbeat(NAME, node(healthy(beat=-1)), lease(renewed=-10), Pressure(), NOW, DEFAULTS).lease
    assert renewed == {**lease(renewed=-10), "spec": {**lease(renewed=-10)["spec"], "renewTime": at(0)}}


def test_an_owner_of_another_node_is_left_for_the_garbage_collector() -> None:
    # kubelet sets the owner only when there is none: a Lease owned by a Node since deleted is collected,
    # then created anew with the new Node as owner.
    stale = [{**OWNER[0], "uid": "old-uid"}]
    renewed = plan_heartbeat(NAME, node(healthy(beat=-1)), lease(renewed=-10, owners=stale), Pressure(), NOW,
                             DEFAULTS).lease
    assert renewed is not None and renewed["metadata"]["ownerReferences"] == stale


def test_without_the_node_the_lease_is_renewed_without_owner_and_no_status_is_written() -> None:
    plan = plan_heartbeat(NAME, None, None, Pressure(), NOW, DEFAULTS)
    assert plan.lease is not None and "ownerReferences" not in plan.lease["metadata"]
    assert plan.conditions is None
    assert plan.next_check == 10.0


def test_a_shorter_lease_duration_renews_sooner() -> None:
    settings = HeartbeatSettings(node_lease_duration_seconds=8)
    plan = plan_heartbeat(NAME, node(healthy(beat=-1)), lease(renewed=-1, duration=8), Pressure(), NOW, settings)
    assert plan.lease is None and plan.next_check == pytest.approx(1.0)


# --- the Node's conditions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("conditions", "pressure", "written", "next_check"), [
    pytest.param([], Pressure(), True, 6.0, id="none yet: written"),
    pytest.param(healthy(beat=-60), Pressure(), False, 6.0, id="reported a minute ago: not yet"),
    pytest.param(healthy(beat=-298), Pressure(), False, 2.0, id="due in 2s: checked then"),
    pytest.param(healthy(beat=-300), Pressure(), True, 6.0, id="reported 5 minutes ago: written"),
    pytest.param(healthy(beat=-60), Pressure(disk=True), True, 6.0, id="disk pressure: written at once"),
    pytest.param(healthy(beat=-60)[1:], Pressure(), True, 6.0, id="a condition missing: written"),
])
def test_conditions_are_written_when_they_change_or_every_five_minutes(
        conditions: list[Object], pressure: Pressure, written: bool, next_check: float) -> None:
    plan = plan_heartbeat(NAME, node(conditions), lease(renewed=-4), pressure, NOW, DEFAULTS)
    assert (plan.conditions is not None) == written
    assert plan.next_check == pytest.approx(next_check)


def test_a_report_moves_the_heartbeats_and_keeps_the_transitions() -> None:
    plan = plan_heartbeat(NAME, node(healthy(beat=-300, moved=-3600)), lease(renewed=-4), Pressure(), NOW, DEFAULTS)
    assert plan.conditions == healthy(beat=0, moved=-3600)


def test_disk_pressure_transitions_its_condition_only() -> None:
    plan = plan_heartbeat(NAME, node(healthy(beat=-60, moved=-3600)), lease(renewed=-4), Pressure(disk=True), NOW,
                          DEFAULTS)
    assert plan.conditions is not None
    by_type = {c["type"]: c for c in plan.conditions}
    assert by_type["DiskPressure"] == condition("DiskPressure", "True", "KubeletHasDiskPressure",
                                                "kubelet has disk pressure", 0, 0)
    assert by_type["Ready"] == healthy(beat=0, moved=-3600)[3]
    assert [c["type"] for c in plan.conditions] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]


def test_conditions_owned_by_others_are_kept_in_place() -> None:
    network = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated", "message": "routes made",
               "lastHeartbeatTime": stamp(-9999), "lastTransitionTime": stamp(-9999)}
    plan = plan_heartbeat(NAME, node([network, *healthy(beat=-300)]), lease(renewed=-4), Pressure(), NOW, DEFAULTS)
    assert plan.conditions == [network, *healthy(beat=0)]


def test_both_due_together() -> None:
    plan = plan_heartbeat(NAME, node(healthy(beat=-400)), lease(renewed=-11), Pressure(), NOW, DEFAULTS)
    assert plan.lease is not None and plan.conditions is not None
    assert plan.next_check == 10.0


# --- pressure --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("memory", "disk", "inodes", "expected"), [
    (8 << 30, 0.5, 0.5, Pressure()),
    (MEMORY_AVAILABLE_MIN - 1, 0.5, 0.5, Pressure(memory=True)),
    (MEMORY_AVAILABLE_MIN, 0.5, 0.5, Pressure()),
    (None, 0.5, 0.5, Pressure()),
    (8 << 30, 0.09, 0.5, Pressure(disk=True)),
    (8 << 30, 0.5, 0.04, Pressure(disk=True)),
])
def test_pressure_against_kubelets_default_eviction_thresholds(memory: int | None, disk: float, inodes: float,
                                                               expected: Pressure) -> None:
    assert pressure_of(memory, disk, inodes) == expected


def test_observe_pressure_reads_meminfo_and_the_state_filesystem(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:          10000 kB\nMemAvailable:      50000 kB\n")
    assert observe_pressure(tmp_path, meminfo).memory  # 50,000 kB is less than 100 MiB
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   20000000 kB\n")
    assert not observe_pressure(tmp_path, meminfo).memory


# --- the reconciler on the embedded store ------------------------------------------------------------------------

class FlakyLeases:
    """The embedded store, with Lease writes failing as an overloaded API server's do while `failing`."""

    def __init__(self, cluster: EmbeddedCluster) -> None:
        self._cluster = cluster
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    async def update(self, obj: Object, **kwargs: Any) -> Object:
        if self.failing and obj["kind"] == "Lease":
            raise ServerError("etcdserver: request timed out")
        return await self._cluster.update(obj, **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=NOW)


async def test_the_reconciler_creates_then_renews_the_lease(tmp_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(tmp_path / "store.db", clock=clock.now) as cluster:
        await register_node(cluster, clock.now())
        beat = NodeHeartbeat(cluster, NAME, clock, Pressure)
        key = Key("", NAME)
        assert (await beat.reconcile(key)).requeue_after == 10.0
        first = await cluster.get("coordination.k8s.io/v1", "Lease", NAME, "kube-node-lease")
        stored_node = await cluster.get("v1", "Node", NAME)
        assert first["spec"] == {"holderIdentity": NAME, "leaseDurationSeconds": 40, "renewTime": at(0)}
        assert first["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Node", "name": NAME, "uid": stored_node["metadata"]["uid"]}]
        clock.advance(4)
        assert (await beat.reconcile(key)).requeue_after == pytest.approx(6.0)
        unchanged = await cluster.get("coordination.k8s.io/v1", "Lease", NAME, "kube-node-lease")
        assert unchanged["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        clock.advance(6)
        await beat.reconcile(key)
        renewed = await cluster.get("coordination.k8s.io/v1", "Lease", NAME, "kube-node-lease")
        assert renewed["spec"]["renewTime"] == at(10)
        assert (await beat.reconcile(Key("", "another-node"))).requeue_after is None


async def test_the_reconciler_reports_conditions_every_five_minutes(tmp_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(tmp_path / "store.db", clock=clock.now) as cluster:
        await register_node(cluster, clock.now())
        beat = NodeHeartbeat(cluster, NAME, clock, Pressure)
        for _ in range(31):  # five minutes of renewals, every 10 s
            await beat.reconcile(Key("", NAME))
            clock.advance(10)
        ready = [c for c in (await cluster.get("v1", "Node", NAME))["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["lastHeartbeatTime"] == stamp(300) and ready[0]["lastTransitionTime"] == stamp(0)


async def test_failed_renewals_are_retried_with_backoff_and_recover(tmp_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(tmp_path / "store.db", clock=clock.now) as store:
        await register_node(store, clock.now())
        cluster = FlakyLeases(store)
        beat = NodeHeartbeat(cluster, NAME, clock, Pressure)  # type: ignore[arg-type]
        await beat.reconcile(Key("", NAME))
        cluster.failing = True
        clock.advance(10)
        delays = [(await beat.reconcile(Key("", NAME))).requeue_after for _ in range(6)]
        assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        cluster.failing = False
        assert (await beat.reconcile(Key("", NAME))).requeue_after == 10.0
        renewed = await store.get("coordination.k8s.io/v1", "Lease", NAME, "kube-node-lease")
        assert renewed["spec"]["renewTime"] == at(10)


@pytest.mark.parametrize(("duration", "frequency"), [(0, 300.0), (-1, 300.0), (40, 0.5), (40, 0.0)])
def test_settings_that_would_spin_are_refused(duration: int, frequency: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        HeartbeatSettings(node_lease_duration_seconds=duration, node_status_report_frequency=frequency)
