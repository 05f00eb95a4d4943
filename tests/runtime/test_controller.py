"""Controllers on the embedded store: a toy mirror converges, stays level-triggered, retries failures with
backoff on the fake clock, honours requeue_after, and follows owned objects back to their owner."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.runtime.manager import Manager
from cdi.runtime.types import DONE, ControllerSpec, Key, Result, Watch, owner_keys
from tests.runtime.clock import FakeClock
from tests.runtime.toys import Mirror, add_mirror, configmap, secret_value
from tests.runtime.waiting import loop_gaps, running, until

A = Key("default", "a")


async def wait_for_value(cluster: EmbeddedCluster, name: str, expected: str | None) -> None:
    async def holds() -> bool:
        return await secret_value(cluster, name) == expected

    await until(holds, what=f"secret {name} = {expected!r}")


async def test_the_mirror_converges_and_repairs_what_it_owns(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    mirror = add_mirror(manager, cluster)
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        await cluster.create(configmap("b", "2"))
        await wait_for_value(cluster, "a", "1")
        await wait_for_value(cluster, "b", "2")
        await cluster.patch("v1", "ConfigMap", "a", {"spec": {"value": "3"}}, "default")
        await wait_for_value(cluster, "a", "3")
        secret_b = await cluster.get("v1", "Secret", "b", "default")
        await cluster.update(dict(secret_b, data={"value": "tampered"}))  # only the Secret watch sees this
        await wait_for_value(cluster, "b", "2")
        await cluster.delete("v1", "Secret", "b", "default")  # DELETED maps through the last known owner
        await wait_for_value(cluster, "b", "2")
    assert mirror.overlaps == 0


async def test_reconcile_reads_current_state_not_the_event_that_woke_it(cluster: EmbeddedCluster,
                                                                     clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    gate = asyncio.Event()
    mirror = add_mirror(manager, cluster, watch_secrets=False, workers=4, gate=gate)
    async with running(manager):
        await cluster.create(configmap("a", "v0"))
        await asyncio.wait_for(mirror.entered.wait(), 3)  # the first reconcile holds the key, gated
        for value in ("v1", "v2", "v3"):
            await cluster.patch("v1", "ConfigMap", "a", {"spec": {"value": value}}, "default")
        cache = manager.reader("v1", "ConfigMap")
        await until(lambda: (cache.get(A) or {}).get("spec") == {"value": "v3"}, what="the cache to catch up")
        gate.set()
        await wait_for_value(cluster, "a", "v3")
        await until(lambda: mirror.finished == 2)
    assert mirror.seen == ["v0", "v3"]  # three changes while busy: one more reconcile, of the latest state
    assert mirror.overlaps == 0


async def test_a_failing_reconcile_is_retried_with_growing_backoff(cluster: EmbeddedCluster, clock: FakeClock,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    manager = Manager(cluster, clock=clock)
    mirror = add_mirror(manager, cluster, failures=3)
    controller = manager.controllers[0]
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        for attempt, delay in enumerate([0.005, 0.01, 0.02], start=1):
            await until(lambda: A in controller.queue.waiting)
            assert len(mirror.calls) == attempt
            assert controller.queue.waiting[A] - clock.monotonic() == pytest.approx(delay)
            clock.advance(delay / 2)
            assert A in controller.queue.waiting  # not before its time
            clock.advance(delay / 2)
        await wait_for_value(cluster, "a", "1")
        assert controller.queue.num_requeues(A) == 0  # success forgets the failures
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in failures] == [
        f"mirror: reconcile default/a failed (retry {n}): RuntimeError: injected failure {n}" for n in (1, 2, 3)]
    assert all(record.exc_info is None for record in failures)  # the traceback is at debug level only


async def test_requeue_after_runs_the_key_again_later(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    mirror = add_mirror(manager, cluster, watch_secrets=False, requeue_after=60)
    controller = manager.controllers[0]
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        await until(lambda: mirror.finished == 1 and A in controller.queue.waiting)
        await cluster.patch("v1", "ConfigMap", "a", {"spec": {"value": "2"}}, "default")
        await until(lambda: mirror.finished == 2)
        clock.advance(59)
        assert A in controller.queue.waiting and len(controller.queue) == 0
        clock.advance(1)
        await until(lambda: mirror.finished == 3)
    assert mirror.seen == ["1", "2", "2"]


async def test_watches_share_the_informers_readers_use(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    add_mirror(manager, cluster)
    controller = manager.controllers[0]
    assert controller.informers == [manager.reader("v1", "ConfigMap"), manager.reader("v1", "Secret")]


async def test_a_predicate_keeps_primary_objects_it_refuses_out_of_the_queue(cluster: EmbeddedCluster,
                                                                            clock: FakeClock) -> None:
    """controller-runtime's predicates on For(): a ConfigMap not labelled `mirror=yes` wakes nothing until a
    change makes it pass; the Secret watch still maps to its owner whatever the predicate says."""
    manager = Manager(cluster, clock=clock)

    def labelled(obj: Object) -> bool:
        return bool(((obj.get("metadata") or {}).get("labels") or {}).get("mirror") == "yes")

    mirror = add_mirror(manager, cluster, predicate=labelled)
    async with running(manager):
        await cluster.create(configmap("a", "1"))
        await cluster.create(configmap("b", "2", labels={"mirror": "yes"}))
        await wait_for_value(cluster, "b", "2")
        await asyncio.sleep(0.3)
        assert Key("default", "a") not in mirror.calls and await secret_value(cluster, "a") is None
        await cluster.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"mirror": "yes"}}}, "default")
        await wait_for_value(cluster, "a", "1")
        await cluster.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"mirror": "no"}}}, "default")
        await cluster.delete("v1", "Secret", "a", "default")  # the watch on owned Secrets still maps to "a"
        await wait_for_value(cluster, "a", "1")


async def test_a_watch_that_asks_only_wakes_primaries_the_predicate_accepts(cluster: EmbeddedCluster,
                                                                            clock: FakeClock) -> None:
    """`Watch(only_served=True)`: an owned Secret's change wakes its ConfigMap only if the predicate accepts
    the cached ConfigMap (the DataVolume controllers' claims watch); without the flag it always does."""
    manager = Manager(cluster, clock=clock)

    def labelled(obj: Object) -> bool:
        return bool(((obj.get("metadata") or {}).get("labels") or {}).get("mirror") == "yes")

    mirror = Mirror(cluster, manager.reader("v1", "ConfigMap"))
    manager.add(ControllerSpec("mirror", "v1", "ConfigMap", mirror,
                               (Watch("v1", "Secret", owner_keys("ConfigMap"), only_served=True),), 2,
                               predicate=labelled))
    async with running(manager):
        await cluster.create(configmap("a", "1", labels={"mirror": "yes"}))
        await wait_for_value(cluster, "a", "1")
        await cluster.delete("v1", "Secret", "a", "default")  # served: the watch wakes "a", which repairs it
        await wait_for_value(cluster, "a", "1")
        await cluster.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"mirror": "no"}}}, "default")
        await asyncio.sleep(0.2)
        calls = len(mirror.calls)
        await cluster.delete("v1", "Secret", "a", "default")  # no longer served: nothing wakes
        await asyncio.sleep(0.3)
        assert len(mirror.calls) == calls and await secret_value(cluster, "a") is None


class BusyReconciler:
    """Reads nothing, writes nothing, never suspends: 1 ms of work per key."""

    def __init__(self) -> None:
        self.done = 0

    async def reconcile(self, key: Key) -> Result:
        busy_until = time.perf_counter() + 0.001
        while time.perf_counter() < busy_until:
            pass
        self.done += 1
        return DONE


async def test_a_worker_with_a_backlog_lets_the_event_loop_run_between_reconciles(cluster: EmbeddedCluster,
                                                                                  clock: FakeClock) -> None:
    for n in range(300):
        await cluster.create(configmap(f"cm-{n}", str(n)))
    manager = Manager(cluster, clock=clock)
    busy = BusyReconciler()
    manager.add(ControllerSpec("busy", "v1", "ConfigMap", busy, (), 1))
    async with loop_gaps(lambda: busy.done > 0) as gaps, running(manager):
        await until(lambda: busy.done == 300, what="300 reconciles")
    assert max(gaps) < 0.05, f"the event loop was held for {max(gaps) * 1000:.0f} ms"
