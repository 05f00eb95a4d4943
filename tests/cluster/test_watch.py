"""Watches on the embedded store: replay from a resourceVersion, filters, wake-ups, compaction and `Gone`."""

from __future__ import annotations

import asyncio
import struct
from datetime import timedelta
from pathlib import Path

import pytest

from cdi.cluster.errors import Gone, Invalid
from cdi.embedded import EmbeddedCluster
from cdi.embedded.sqlite import NEWEST_COMPACTABLE
from cdi.embedded.wakeup import event_names
from tests.cluster.conftest import FakeClock
from tests.cluster.manifests import configmap
from tests.cluster.watching import assert_quiet, take, take_events


async def test_watch_replays_exactly_the_later_changes_in_order(cluster: EmbeddedCluster) -> None:
    a = await cluster.create(configmap("a"))
    await cluster.create(configmap("b"))
    since = (await cluster.list("v1", "ConfigMap")).resource_version
    await cluster.update(dict(a, data={"x": "1"}))
    await cluster.delete("v1", "ConfigMap", "b", "default")
    await cluster.create(configmap("c"))
    await cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}})

    stream = cluster.watch("v1", "ConfigMap", resource_version=since)
    events = await take_events(stream, 3)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    versions = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert int(since) < versions[0] < versions[1] < versions[2]
    assert events[0].object["data"] == {"x": "1"}
    await assert_quiet(stream)


async def test_watch_from_zero_starts_with_the_current_objects(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("a"))
    await cluster.create(configmap("b"))
    await cluster.delete("v1", "ConfigMap", "a", "default")
    stream = cluster.watch("v1", "ConfigMap", resource_version="0")
    assert await take(stream, 1) == [("ADDED", "b")]
    await cluster.create(configmap("c"))
    assert await take(stream, 1) == [("ADDED", "c")]


async def test_watch_wakes_at_once_on_local_writes(db_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(db_path, clock=clock, poll_interval=60) as slow_poller:
        stream = slow_poller.watch("v1", "ConfigMap", resource_version="0")
        waiter = asyncio.ensure_future(take(stream, 1, timeout=2))
        await asyncio.sleep(0.05)
        await slow_poller.create(configmap("a"))
        assert await waiter == [("ADDED", "a")]


async def test_watch_wakes_promptly_on_another_connections_writes(db_path: Path, clock: FakeClock) -> None:
    """Another process's commit (here another connection to the file) wakes the stream through inotify
    and SQLite's data_version, not after the poll interval (60 s here)."""
    async with EmbeddedCluster(db_path, clock=clock, poll_interval=60) as watcher, \
            EmbeddedCluster(db_path, clock=clock, poll_interval=60) as writer:
        stream = watcher.watch("v1", "ConfigMap", resource_version="0")
        waiter = asyncio.ensure_future(take(stream, 2, timeout=5))
        await asyncio.sleep(0.1)
        await writer.create(configmap("a"))
        await asyncio.sleep(0.1)
        await writer.create(configmap("b"))
        assert await waiter == [("ADDED", "a"), ("ADDED", "b")]


def test_inotify_events_are_read_by_name() -> None:
    def event(name: bytes, padded: int) -> bytes:
        return struct.pack("iIII", 1, 2, 0, padded) + name + b"\0" * (padded - len(name))
    assert list(event_names(event(b"store.db-wal", 16) + event(b"x", 16) + event(b"", 0))) == [
        "store.db-wal", "x", ""]


async def test_watch_filters_by_namespace_and_kind(cluster: EmbeddedCluster) -> None:
    since = (await cluster.list("v1", "ConfigMap")).resource_version
    stream = cluster.watch("v1", "ConfigMap", resource_version=since, namespace="team")
    await cluster.create(configmap("elsewhere", namespace="default"))
    await cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "team"}})
    await cluster.create(configmap("here", namespace="team"))
    assert await take(stream, 1) == [("ADDED", "here")]
    await assert_quiet(stream)


@pytest.mark.parametrize("selector", [{"app": "cdi"}, "app=cdi", "app in (cdi)"])
async def test_watch_with_label_selector_follows_label_changes(cluster: EmbeddedCluster,
                                                              selector: dict[str, str] | str) -> None:
    since = (await cluster.list("v1", "ConfigMap")).resource_version
    stream = cluster.watch("v1", "ConfigMap", resource_version=since, label_selector=selector)
    await cluster.create(configmap("other", labels={"app": "web"}))
    cm = await cluster.create(configmap("cm", labels={"app": "cdi"}))
    cm = await cluster.update(dict(cm, data={"a": "1"}))
    cm = await cluster.patch("v1", "ConfigMap", "cm", {"metadata": {"labels": {"app": "web"}}}, "default")
    await cluster.patch("v1", "ConfigMap", "other", {"metadata": {"labels": {"app": "cdi"}}}, "default")
    await cluster.delete("v1", "ConfigMap", "other", "default")
    await cluster.delete("v1", "ConfigMap", "cm", "default")
    assert await take(stream, 5) == [
        ("ADDED", "cm"), ("MODIFIED", "cm"), ("DELETED", "cm"), ("ADDED", "other"), ("DELETED", "other")]
    await assert_quiet(stream)


async def test_watch_from_a_compacted_version_is_gone(db_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(db_path, clock=clock, retain_changes=3, retain_for=timedelta(0)) as cluster:
        first = await cluster.create(configmap("cm-0"))
        for index in range(1, 10):
            await cluster.create(configmap(f"cm-{index}"))
        assert await cluster.compact() == 7  # resourceVersions 2..8 go, 9..11 stay
        with pytest.raises(Gone, match="too old resource version"):
            await anext(cluster.watch("v1", "ConfigMap", resource_version=first["metadata"]["resourceVersion"]))
        recent = str(int((await cluster.list("v1", "ConfigMap")).resource_version) - 3)
        assert await take(cluster.watch("v1", "ConfigMap", resource_version=recent), 3) == [
            ("ADDED", "cm-7"), ("ADDED", "cm-8"), ("ADDED", "cm-9")]


async def test_compaction_keeps_recent_changes_and_runs_by_itself(db_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(db_path, clock=clock, retain_changes=10, retain_for=timedelta(minutes=5)) as cluster:
        for index in range(200):
            await cluster.create(configmap(f"cm-{index}"))
        # Everything is younger than five minutes, so nothing may go yet.
        assert await anext(cluster.watch("v1", "ConfigMap", resource_version="1")) is not None
        clock.advance(600)
        for index in range(200, 260):
            await cluster.create(configmap(f"cm-{index}"))  # crosses an automatic compaction point
        with pytest.raises(Gone):
            await anext(cluster.watch("v1", "ConfigMap", resource_version="1"))


async def test_a_caught_up_watch_on_a_quiet_kind_survives_compaction(db_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(db_path, clock=clock, retain_changes=2, retain_for=timedelta(0),
                               poll_interval=0.01) as cluster:
        await cluster.create(configmap("first"))
        stream = cluster.watch("v1", "ConfigMap", resource_version="0")
        assert await take(stream, 1) == [("ADDED", "first")]
        for index in range(10):
            await cluster.create({"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": f"s-{index}", "namespace": "default"}})
        await assert_quiet(stream)  # the stream advanced past the secrets while idle
        await cluster.compact()
        await cluster.create(configmap("second"))
        assert await take(stream, 1) == [("ADDED", "second")]


async def test_closing_the_cluster_ends_its_watches(db_path: Path, clock: FakeClock) -> None:
    cluster = EmbeddedCluster(db_path, clock=clock, poll_interval=60)
    stream = cluster.watch("v1", "ConfigMap", resource_version="0")
    waiter = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0.05)
    await cluster.close()
    with pytest.raises(StopAsyncIteration):
        await waiter
    await cluster.close()  # closing twice is harmless


async def test_a_consumer_may_stop_and_close_the_stream(cluster: EmbeddedCluster) -> None:
    stream = cluster.watch("v1", "ConfigMap", resource_version="0")
    await cluster.create(configmap("a"))
    async for event in stream:
        assert event.type == "ADDED"
        break
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_bad_resource_versions_are_invalid(cluster: EmbeddedCluster) -> None:
    with pytest.raises(Invalid):
        cluster.watch("v1", "ConfigMap", resource_version="abc")


async def test_the_compaction_check_reads_the_time_index_not_every_change(db_path: Path, clock: FakeClock) -> None:
    """Which changes are old enough to drop is answered from `changes_by_time` alone: with nothing old
    enough, it reads no row however long the log (the check runs every 128 resourceVersions)."""
    import sqlite3

    async with EmbeddedCluster(db_path, clock=clock, retain_changes=10, retain_for=timedelta(minutes=5)) as cluster:
        for index in range(300):
            await cluster.create(configmap(f"cm-{index}"))
        assert await cluster.compact() == 0  # all younger than five minutes
    with sqlite3.connect(db_path) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN " + NEWEST_COMPACTABLE, (0, 290)).fetchall()
    assert "COVERING INDEX changes_by_time" in " ".join(str(row[-1]) for row in plan)
