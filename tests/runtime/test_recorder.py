"""`QueuedEvents`: a reconcile's Events are written by the recorder's own task, not while it waits.

The Event itself must be what a direct write would have made: the time and the object's reference as
they were when it was recorded, repeats counted. The writer retries what the server calls retryable,
drops what it refuses (and keeps going), drops past its queue, and the manager writes what is queued
before it stops. The main test runs on both backends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdi.cluster.errors import Forbidden, Invalid, ServerError
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded import EmbeddedCluster
from cdi.runtime.manager import Manager
from cdi.runtime.recorder import QueuedEvents
from cdi.runtime.types import DONE, ControllerSpec, Key, Result
from tests.runtime.clock import FakeClock
from tests.runtime.waiting import until
from tests.support.backends import Backend

T0 = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class HeldEvents:
    """A `Cluster` whose Event writes wait at a gate, or fail with the errors queued in `failures`."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.failures: list[Exception] = []
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    async def _held(self) -> None:
        self.writes += 1
        self.entered.set()
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)

    async def create(self, obj: Object, **kwargs: Any) -> Object:
        if obj.get("kind") == "Event":
            await self._held()
        return await self._cluster.create(obj, **kwargs)

    async def patch(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> Object:
        if kind == "Event":
            await self._held()
        return await self._cluster.patch(api_version, kind, *args, **kwargs)


def configmap(name: str, namespace: str) -> Object:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"a": "1"}}


async def events_in(cluster: Cluster, namespace: str) -> list[Object]:
    return [e for e in (await cluster.list("v1", "Event", namespace)).items
            if e["involvedObject"].get("kind") == "ConfigMap"]


async def test_record_returns_at_once_and_the_event_is_as_of_the_call(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    held, clock = HeldEvents(c), Clock()
    recorder = QueuedEvents(held, clock)
    cm = await c.create(configmap("subject", ns))
    held.gate.clear()
    try:
        await asyncio.wait_for(recorder.record(cm, "Normal", "Imported", "done", component="test-controller"), 1)
        await asyncio.wait_for(held.entered.wait(), 5)  # the writer took it, and is held
        assert await events_in(c, ns) == []
        # What changes after `record` (the clock, the object) is not what the Event says.
        clock.now = T0 + timedelta(minutes=5)
        await c.patch("v1", "ConfigMap", "subject", {"data": {"a": "2"}}, ns)
        await recorder.record(cm, "Normal", "Imported", "done", component="test-controller")
        held.gate.set()
        await asyncio.wait_for(recorder.flush(), 10)
        (event,) = await events_in(c, ns)
        assert (event["type"], event["reason"], event["message"], event["count"]) == ("Normal", "Imported", "done", 2)
        assert event["involvedObject"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
        assert event["involvedObject"]["uid"] == cm["metadata"]["uid"]
        assert event["firstTimestamp"] == "2026-12-03T07:00:00Z"
        assert event["lastTimestamp"] == "2026-12-03T07:05:00Z"
        assert event["source"] == {"component": "test-controller"}
        assert recorder.dropped == 0
    finally:
        held.gate.set()
        await recorder.stop(5)


async def test_an_invalid_event_is_refused_at_the_call(cluster: EmbeddedCluster) -> None:
    recorder = QueuedEvents(cluster, Clock())
    cm = await cluster.create(configmap("subject", "default"))
    with pytest.raises(Invalid, match="Normal, Warning"):
        await recorder.record(cm, "Info", "Imported", "done", component="c")
    with pytest.raises(Invalid, match=r"kind and metadata\.name"):
        await recorder.record({"metadata": {"name": "x"}}, "Normal", "Imported", "done", component="c")
    await recorder.stop(1)


async def test_retryable_errors_are_retried_and_a_refused_event_does_not_stop_the_writer(
        cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture) -> None:
    held = HeldEvents(cluster)
    recorder = QueuedEvents(held, Clock(), retry_delay=0.01)
    cm = await cluster.create(configmap("subject", "default"))
    held.failures = [ServerError("etcd leader changed"), ServerError("etcd leader changed")]
    await recorder.record(cm, "Normal", "First", "retried twice, then written", component="c")
    await recorder.flush()
    assert held.writes == 3
    assert [e["reason"] for e in await events_in(cluster, "default")] == ["First"]

    held.failures = [Forbidden('events is forbidden: User "x" cannot create resource "events"')]
    with caplog.at_level(logging.WARNING, logger="cdi.runtime.recorder"):
        await recorder.record(cm, "Warning", "Refused", "never written", component="c")
        await recorder.record(cm, "Normal", "Second", "written after the refused one", component="c")
        await recorder.flush()
    assert sorted(e["reason"] for e in await events_in(cluster, "default")) == ["First", "Second"]
    assert recorder.dropped == 1
    assert "could not record Warning event Refused on ConfigMap default/subject (attempt 1)" in caplog.text
    await recorder.stop(1)


async def test_events_past_the_queue_are_dropped_with_a_warning(cluster: EmbeddedCluster,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    held = HeldEvents(cluster)
    recorder = QueuedEvents(held, Clock(), max_queued=2)
    cm = await cluster.create(configmap("subject", "default"))
    held.gate.clear()
    await recorder.record(cm, "Normal", "R0", "in the writer's hands", component="c")
    await asyncio.wait_for(held.entered.wait(), 5)
    with caplog.at_level(logging.WARNING, logger="cdi.runtime.recorder"):
        for n in (1, 2, 3):
            await recorder.record(cm, "Normal", f"R{n}", "queued", component="c")
    assert recorder.dropped == 1
    assert "event queue full (2 waiting): dropped Normal event R3 on ConfigMap default/subject" in caplog.text
    held.gate.set()
    await recorder.flush()
    assert sorted(e["reason"] for e in await events_in(cluster, "default")) == ["R0", "R1", "R2"]
    await recorder.stop(1)


async def test_stop_gives_up_on_a_stuck_writer_and_says_how_many_were_lost(
        cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture) -> None:
    held = HeldEvents(cluster)
    recorder = QueuedEvents(held, Clock())
    cm = await cluster.create(configmap("subject", "default"))
    held.gate.clear()
    for n in range(3):
        await recorder.record(cm, "Normal", f"R{n}", "stuck", component="c")
    await asyncio.wait_for(held.entered.wait(), 5)
    with caplog.at_level(logging.WARNING, logger="cdi.runtime.recorder"):
        await asyncio.wait_for(recorder.stop(0.2), 5)
    assert "stopping with 3 event(s) not written after 0.2s; dropped" in caplog.text
    assert recorder.dropped == 3
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "event-recorder"]


class Recording:
    """A reconciler that records an Event about each ConfigMap it sees."""

    def __init__(self, cluster: Cluster, manager: Manager) -> None:
        self._cluster, self._events = cluster, manager.events()
        self.done: set[str] = set()

    async def reconcile(self, key: Key) -> Result:
        cm = await self._cluster.get("v1", "ConfigMap", key.name, key.namespace)
        await self._events.record(cm, "Normal", "Seen", f"saw {key.name}", component="recording")
        self.done.add(key.name)
        return DONE


async def test_the_manager_writes_what_its_controllers_recorded_before_it_stops(cluster: EmbeddedCluster,
                                                                                clock: FakeClock) -> None:
    held = HeldEvents(cluster)
    manager = Manager(held, clock=clock)
    reconciler = Recording(manager.client(), manager)
    manager.add(ControllerSpec("recording", "v1", "ConfigMap", reconciler))
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        held.gate.clear()  # reconciles go on while their Events wait
        for n in range(3):
            await cluster.create(configmap(f"cm{n}", "default"))
        await until(lambda: reconciler.done == {"cm0", "cm1", "cm2"}, 10, "the reconciles, with their Events held")
        assert await events_in(cluster, "default") == []
        held.gate.set()
        stop.set()
        await asyncio.wait_for(running, 30)
    finally:
        held.gate.set()
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(e["message"] for e in await events_in(cluster, "default")) == ["saw cm0", "saw cm1", "saw cm2"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "event-recorder"], "the writer outlived the manager"
