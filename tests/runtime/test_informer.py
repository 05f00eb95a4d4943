"""Informers against the embedded store: the cache mirrors it, handlers see every change in order, and a
lost watch (compaction past its resourceVersion, a broken stream) is recovered without missing changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from cdi.cluster.protocol import Cluster, EventType, Object, ObjectList, WatchEvent
from cdi.embedded import EmbeddedCluster
from cdi.runtime.informer import Informer, SharedInformers
from cdi.runtime.types import Key
from tests.runtime.clock import FakeClock
from tests.runtime.toys import configmap
from tests.runtime.waiting import loop_gaps, until

Seen = list[tuple[str, str, str | None]]


def recorder(informer: Informer) -> Seen:
    """Record (event type, name, spec.value) of every event the informer reports."""
    seen: Seen = []

    def handler(event_type: EventType, obj: Object) -> None:
        seen.append((event_type, obj["metadata"]["name"], (obj.get("spec") or {}).get("value")))

    informer.add_handler(handler)
    return seen


async def store_state(cluster: Cluster, **scope: Any) -> dict[Key, str]:
    return {Key.of(obj): obj["metadata"]["resourceVersion"] for obj in (await cluster.list("v1", "ConfigMap",
                                                                                          **scope)).items}


def cache_state(informer: Informer, **scope: Any) -> dict[Key, str]:
    return {Key.of(obj): obj["metadata"]["resourceVersion"] for obj in informer.list(**scope)}


async def test_the_cache_mirrors_the_store_and_handlers_see_changes_in_order(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("before", "0"))
    informer = Informer(cluster, "v1", "ConfigMap")
    seen = recorder(informer)
    informer.start()
    try:
        await asyncio.wait_for(informer.wait_synced(), 3)
        assert informer.has_synced()
        a = await cluster.create(configmap("a", "1"))
        await cluster.update(dict(a, spec={"value": "2"}))
        await cluster.create(configmap("b", "1", namespace="other"))
        await cluster.delete("v1", "ConfigMap", "before", "default")
        await until(lambda: len(seen) == 5, what="five events")
        assert seen == [("ADDED", "before", "0"), ("ADDED", "a", "1"), ("MODIFIED", "a", "2"), ("ADDED", "b", "1"),
                        ("DELETED", "before", "0")]
        assert cache_state(informer) == await store_state(cluster)
        assert informer.get(Key("default", "a"))["spec"] == {"value": "2"}  # type: ignore[index]
        assert informer.get(Key("default", "before")) is None
        assert [o["metadata"]["name"] for o in informer.list(namespace="other")] == ["b"]
    finally:
        await informer.stop()


async def test_the_cache_hands_out_copies(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("a", "1"))
    informer = Informer(cluster, "v1", "ConfigMap")
    informer.start()
    try:
        await informer.wait_synced()
        informer.get(Key("default", "a"))["spec"]["value"] = "scribbled"  # type: ignore[index]
        assert informer.get(Key("default", "a"))["spec"] == {"value": "1"}  # type: ignore[index]
    finally:
        await informer.stop()


async def test_a_late_handler_first_sees_the_cached_objects(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("a", "1"))
    informer = Informer(cluster, "v1", "ConfigMap")
    informer.start()
    try:
        await informer.wait_synced()
        seen = recorder(informer)
        assert seen == [("ADDED", "a", "1")]
    finally:
        await informer.stop()


class InterferingCluster:
    """A `Cluster` (list and watch only) that can hold the next watch back before it starts reading, or
    cut a watch stream, dropping the event in flight."""

    def __init__(self, inner: EmbeddedCluster) -> None:
        self.inner = inner
        self.cut_next_event = False
        self.hold_next_watch = False
        self.held = asyncio.Event()  # a held watch is waiting
        self.release = asyncio.Event()
        self.lists = 0
        self.watches = 0

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None) -> ObjectList:
        self.lists += 1
        return await self.inner.list(api_version, kind, namespace, label_selector)

    async def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
                    label_selector: Mapping[str, str] | str | None = None,
                    allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        if self.hold_next_watch:
            self.hold_next_watch = False
            self.held.set()
            await self.release.wait()
        async for event in self.inner.watch(api_version, kind, resource_version=resource_version,
                                            namespace=namespace, label_selector=label_selector):
            if self.cut_next_event:
                self.cut_next_event = False
                raise ConnectionResetError("connection reset by peer")
            yield event


async def test_after_compaction_it_relists_and_reports_what_it_missed(db_path: Path, clock: FakeClock,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cdi.runtime.informer")
    async with EmbeddedCluster(db_path, clock=clock.now, retain_changes=1, retain_for=timedelta(0),
                               poll_interval=0.02) as cluster:
        stays = await cluster.create(configmap("stays", "1"))
        changes = await cluster.create(configmap("changes", "1"))
        await cluster.create(configmap("goes", "1"))
        slow = InterferingCluster(cluster)
        slow.hold_next_watch = True  # the watch from the list's resourceVersion starts late...
        informer = Informer(cast(Cluster, slow), "v1", "ConfigMap")
        seen = recorder(informer)
        informer.start()
        try:
            await informer.wait_synced()
            await asyncio.wait_for(slow.held.wait(), 3)
            listed_at = informer.resource_version
            await cluster.update(dict(changes, spec={"value": "2"}))
            await cluster.delete("v1", "ConfigMap", "goes", "default")
            await cluster.create(configmap("new", "1"))
            assert await cluster.compact() > 0  # ...after the changes it needs are compacted away
            slow.release.set()
            await until(lambda: len(seen) == 6, what="the missed changes")
            assert sorted(seen[:3]) == [("ADDED", "changes", "1"), ("ADDED", "goes", "1"), ("ADDED", "stays", "1")]
            assert sorted(seen[3:]) == [("ADDED", "new", "1"), ("DELETED", "goes", "1"),
                                        ("MODIFIED", "changes", "2")]  # "stays" is not reported again
            assert "watch expired" in caplog.text
            assert slow.lists == 2
            assert int(informer.resource_version) > int(listed_at)
            assert cache_state(informer) == await store_state(cluster)
            assert informer.get(Key.of(stays)) is not None
            await cluster.delete("v1", "ConfigMap", "stays", "default")  # and it watches again afterwards
            await until(lambda: len(seen) == 7)
            assert seen[-1] == ("DELETED", "stays", "1")
        finally:
            await informer.stop()


async def test_a_broken_watch_stream_is_relisted_and_the_lost_change_reported(cluster: EmbeddedCluster) -> None:
    flaky = InterferingCluster(cluster)
    a = await cluster.create(configmap("a", "1"))
    informer = Informer(cast(Cluster, flaky), "v1", "ConfigMap")
    seen = recorder(informer)
    informer.start()
    try:
        await informer.wait_synced()
        flaky.cut_next_event = True
        await cluster.update(dict(a, spec={"value": "2"}))
        await until(lambda: len(seen) == 2, what="the change lost with the stream")
        assert seen == [("ADDED", "a", "1"), ("MODIFIED", "a", "2")]
        assert (flaky.lists, flaky.watches) == (2, 2)
        await cluster.create(configmap("b", "1"))
        await until(lambda: len(seen) == 3)
        assert seen[-1] == ("ADDED", "b", "1")
    finally:
        await informer.stop()


class FailingLists:
    """A `Cluster` whose first lists fail."""

    def __init__(self, inner: EmbeddedCluster, failures: int) -> None:
        self.inner, self.failures, self.lists = inner, failures, 0

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None) -> ObjectList:
        self.lists += 1
        if self.lists <= self.failures:
            raise OSError("store unavailable")
        return await self.inner.list(api_version, kind, namespace, label_selector)

    def watch(self, api_version: str, kind: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(api_version, kind, **kwargs)


async def test_failed_lists_are_retried_with_backoff_until_synced(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("a", "1"))
    failing = FailingLists(cluster, failures=3)
    informer = Informer(cast(Cluster, failing), "v1", "ConfigMap", retry_delay=0.01)
    informer.start()
    try:
        await asyncio.wait_for(informer.wait_synced(), 3)
        assert failing.lists == 4
        assert cache_state(informer) == await store_state(cluster)
    finally:
        await informer.stop()


async def test_selector_and_namespace_filtered_informers(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cdi", "1", labels={"app": "cdi"}))
    await cluster.create(configmap("web", "1", labels={"app": "web"}))
    await cluster.create(configmap("elsewhere", "1", namespace="other", labels={"app": "cdi"}))
    informer = Informer(cluster, "v1", "ConfigMap", namespace="default", label_selector={"app": "cdi"})
    seen = recorder(informer)
    informer.start()
    try:
        await informer.wait_synced()
        await cluster.patch("v1", "ConfigMap", "web", {"metadata": {"labels": {"app": "cdi"}}}, "default")
        await cluster.patch("v1", "ConfigMap", "cdi", {"metadata": {"labels": {"app": "web"}}}, "default")
        await cluster.create(configmap("new", "1", namespace="other", labels={"app": "cdi"}))
        await cluster.create(configmap("new", "1", labels={"app": "cdi", "tier": "x"}))
        await until(lambda: len(seen) == 4)
        assert seen == [("ADDED", "cdi", "1"), ("ADDED", "web", "1"), ("DELETED", "cdi", "1"), ("ADDED", "new", "1")]
        scope = {"namespace": "default", "label_selector": {"app": "cdi"}}
        assert cache_state(informer) == await store_state(cluster, **scope)
        assert [o["metadata"]["name"] for o in informer.list(label_selector={"tier": "x"})] == ["new"]
    finally:
        await informer.stop()


async def test_shared_informers_hand_out_one_informer_per_scope(cluster: EmbeddedCluster) -> None:
    shared = SharedInformers(cluster)
    first = shared.informer("v1", "ConfigMap")
    assert shared.informer("v1", "ConfigMap", None) is first
    assert shared.informer("v1", "ConfigMap", "ns") is not first
    selected = shared.informer("v1", "ConfigMap", label_selector={"a": "1", "b": "2"})
    assert shared.informer("v1", "ConfigMap", label_selector={"b": "2", "a": "1"}) is selected
    await cluster.create(configmap("a", "1"))
    shared.start()
    late = shared.informer("v1", "Secret")  # created after start: started at once
    await asyncio.wait_for(shared.wait_synced(), 3)
    assert late.has_synced() and first.get(Key("default", "a")) is not None
    await shared.stop()


async def test_cached_objects_leave_out_the_field_ownership_record(cluster: EmbeddedCluster) -> None:
    """As controller-runtime's TransformStripManagedFields: neither the cache nor its handlers keep
    `metadata.managedFields`; the store still has it."""
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "namespace": "default"},
               "data": {"k": "v"}}
    await cluster.patch("v1", "ConfigMap", "owned", applied, "default", patch_type="apply", field_manager="tester")
    assert (await cluster.get("v1", "ConfigMap", "owned", "default"))["metadata"]["managedFields"]
    informer = Informer(cluster, "v1", "ConfigMap")
    handled: list[Object] = []
    informer.add_handler(lambda _type, obj: handled.append(obj))
    informer.start()
    try:
        await informer.wait_synced()
        await cluster.patch("v1", "ConfigMap", "owned", {**applied, "data": {"k": "w"}}, "default",
                            patch_type="apply", field_manager="tester")
        await until(lambda: len(handled) == 2, what="the added and the modified ConfigMap")
        cached = informer.get(Key("default", "owned"))
        assert cached is not None and cached["data"] == {"k": "w"}
        assert "managedFields" not in cached["metadata"]
        assert cached["metadata"]["resourceVersion"] == (await cluster.get("v1", "ConfigMap", "owned", "default")
                                                         )["metadata"]["resourceVersion"]
        assert all("managedFields" not in obj["metadata"] for obj in [*handled, *informer.list()])
    finally:
        await informer.stop()


class BufferedBurst:
    """A `Cluster` whose watch hands over `count` events it already holds, never suspending between them
    (as a stream does with a batch of the store's change log or lines an API server sent at once)."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None) -> ObjectList:
        return ObjectList([], "1")

    async def watch(self, api_version: str, kind: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        for n in range(self.count):
            yield WatchEvent("ADDED", configmap(f"cm-{n}", str(n)) | {"metadata": {
                "name": f"cm-{n}", "namespace": "default", "resourceVersion": str(n + 2), "uid": f"u{n}"}})
        await asyncio.Event().wait()  # then nothing more, like a quiet watch


async def test_a_burst_of_buffered_events_does_not_hold_the_event_loop() -> None:
    informer = Informer(cast(Cluster, BufferedBurst(600)), "v1", "ConfigMap")
    seen = recorder(informer)
    informer.add_handler(lambda _type, _obj: time.sleep(0.0005))  # a handler's own work: 0.3 s in all
    async with loop_gaps() as gaps:
        informer.start()
        try:
            await until(lambda: len(seen) == 600, what="all 600 events applied")
        finally:
            await informer.stop()
    assert max(gaps) < 0.05, f"the loop was held for {max(gaps) * 1000:.0f} ms"
