"""Leader election through a Lease: one holder at a time, expiry, hand-over on release, and a manager
that stops when its lease is lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.runtime.lease import LEASE_API, LeaseLock, lease_free
from cdi.runtime.manager import Manager

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def lease(holder: str | None, renewed: datetime, duration: int = 15) -> dict[str, object]:
    return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def test_lease_free_rules() -> None:
    assert lease_free(lease(None, NOW), "a", NOW)
    assert lease_free(lease("a", NOW), "a", NOW)
    assert not lease_free(lease("b", NOW), "a", NOW + timedelta(seconds=10))
    assert lease_free(lease("b", NOW), "a", NOW + timedelta(seconds=16))


async def test_one_holder_then_hand_over_on_release(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cdi"}})
        first = LeaseLock(cluster, "cdi", "cdi-controller", "one", retry_period=0.05)
        second = LeaseLock(cluster, "cdi", "cdi-controller", "two", retry_period=0.05)
        assert await first.acquire()
        waiting = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the lease is held and renewed
        stored = await cluster.get(LEASE_API, "Lease", "cdi-controller", "cdi")
        assert stored["spec"]["holderIdentity"] == "one"
        await first.release()
        async with asyncio.timeout(5):
            assert await waiting
        stored = await cluster.get(LEASE_API, "Lease", "cdi-controller", "cdi")
        assert stored["spec"]["holderIdentity"] == "two" and stored["spec"]["leaseTransitions"] == 1
        await second.release()


async def test_manager_stops_when_the_lease_is_lost(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cdi"}})
        lock = LeaseLock(cluster, "cdi", "cdi-controller", "one", retry_period=0.05, renew_deadline=0.2)
        manager = Manager(cluster, leader_lock=lock)
        stop = asyncio.Event()
        running = asyncio.create_task(manager.run(stop))
        for _ in range(250):
            if manager.active:
                break
            await asyncio.sleep(0.02)
        assert manager.active
        # Another candidate takes the lease over (as after a long pause of this process).
        stolen = await cluster.get(LEASE_API, "Lease", "cdi-controller", "cdi")
        stolen["spec"].update(holderIdentity="usurper", leaseDurationSeconds=3600,
                              renewTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        await cluster.update(stolen)
        async with asyncio.timeout(5):
            await running  # returns without stop being set
        assert not stop.is_set() and not manager.active
