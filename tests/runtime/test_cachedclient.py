"""The cached client: reads come from informer caches (no request to the store after the first list),
writes go through, and the owner index answers "what does this object own"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import ObjectList, WatchEvent
from cdi.embedded import EmbeddedCluster
from cdi.runtime.cachedclient import SERVED_TTL, WRITTEN_TTL, CachedCluster, Written
from cdi.runtime.informer import SharedInformers


class CountingCluster:
    """Counts reads that reach the store; everything else is the embedded store's."""

    def __init__(self, inner: EmbeddedCluster) -> None:
        self.inner, self.gets, self.lists = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.gets += 1
        return await self.inner.get(*args, **kwargs)

    async def list(self, *args: Any, **kwargs: Any) -> ObjectList:
        self.lists += 1
        return await self.inner.list(*args, **kwargs)

    def watch(self, api_version: str, kind: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(api_version, kind, **kwargs)


def configmap(name: str, namespace: str = "default", labels: Mapping[str, str] | None = None,
              owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"]}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def eventually(check: Any) -> None:
    for _ in range(250):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the cache never caught up")


async def test_reads_come_from_the_cache_and_writes_go_through(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as store:
        counting = CountingCluster(store)
        informers = SharedInformers(counting)  # type: ignore[arg-type]
        cached = CachedCluster(counting, informers)  # type: ignore[arg-type]
        try:
            owner = await cached.create(configmap("owner"))
            await cached.create(configmap("a", labels={"app": "x"}, owner=owner))
            await cached.create(configmap("b", namespace="other", labels={"app": "x"}))

            async def seen() -> bool:
                return len((await cached.list("v1", "ConfigMap")).items) == 3
            await eventually(seen)
            lists_after_sync = counting.lists
            for _ in range(20):
                assert (await cached.get("v1", "ConfigMap", "a", "default"))["metadata"]["labels"] == {"app": "x"}
                names = [o["metadata"]["name"] for o in (await cached.list("v1", "ConfigMap", "default",
                                                                           {"app": "x"})).items]
                assert names == ["a"]
            assert counting.gets == 0 and counting.lists == lists_after_sync
            owned = await cached.owned_by("v1", "ConfigMap", owner["metadata"]["uid"])
            assert [o["metadata"]["name"] for o in owned] == ["a"]
            with pytest.raises(NotFound):
                await cached.get("v1", "ConfigMap", "missing", "default")
            await cached.delete("v1", "ConfigMap", "a", "default")

            async def gone() -> bool:
                return not await cached.owned_by("v1", "ConfigMap", owner["metadata"]["uid"])
            await eventually(gone)
        finally:
            await informers.stop()


class CountingDiscovery:
    """Answers `served` from a set of kinds that can change, and counts the questions."""

    def __init__(self) -> None:
        self.kinds = {("cdi.kubevirt.io/v1beta1", "CDI")}
        self.asked = 0

    async def served(self, api_version: str, kind: str) -> bool:
        self.asked += 1
        return (api_version, kind) in self.kinds


async def test_discovery_answers_are_kept_for_a_while_then_asked_again() -> None:
    now = [100.0]
    discovery = CountingDiscovery()
    cached = CachedCluster(discovery, SharedInformers(discovery), clock=lambda: now[0])  # type: ignore[arg-type]
    snapshots = ("snapshot.storage.k8s.io/v1", "VolumeSnapshot")
    for _ in range(50):  # one question per kind, however many reconciles ask
        assert await cached.served("cdi.kubevirt.io/v1beta1", "CDI")
        assert not await cached.served(*snapshots)
    assert discovery.asked == 2
    discovery.kinds.add(snapshots)  # a CRD installed later
    now[0] += SERVED_TTL - 1
    assert not await cached.served(*snapshots)
    now[0] += 2
    assert await cached.served(*snapshots)  # seen once the answer is older than SERVED_TTL
    assert discovery.asked == 3


class StallableCluster(CountingCluster):
    """The store, with watch events held back while `flowing` is clear: an informer that lags."""

    def __init__(self, inner: EmbeddedCluster) -> None:
        super().__init__(inner)
        self.flowing = asyncio.Event()
        self.flowing.set()

    def watch(self, api_version: str, kind: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        async def held() -> AsyncIterator[WatchEvent]:
            async for event in self.inner.watch(api_version, kind, **kwargs):
                await self.flowing.wait()
                yield event
        return held()


async def test_a_read_sees_this_process_own_write_while_the_cache_lags_and_later_writes_win(tmp_path: Path) -> None:
    """A reconcile woken by another kind's informer must not act on a claim older than its own last write
    (it would start a finished worker again); once the cache has caught up, others' writes are read."""
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as store:
        lagging = StallableCluster(store)
        informers = SharedInformers(lagging)  # type: ignore[arg-type]
        cached = CachedCluster(lagging, informers)  # type: ignore[arg-type]
        try:
            await cached.create(configmap("a", labels={"step": "1"}))
            await cached.create(configmap("gone"))

            async def seen() -> bool:
                return len((await cached.list("v1", "ConfigMap")).items) == 2
            await eventually(seen)
            lagging.flowing.clear()
            await cached.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"step": "2"}}}, "default")
            await store.delete("v1", "ConfigMap", "gone", "default")  # another's delete, not seen yet
            await asyncio.sleep(0.2)  # the store has told the informer nothing yet
            assert (await cached.get("v1", "ConfigMap", "a", "default"))["metadata"]["labels"] == {"step": "2"}
            listed = {o["metadata"]["name"]: o["metadata"]["labels"] for o in
                      (await cached.list("v1", "ConfigMap", "default")).items}
            assert listed == {"a": {"step": "2"}, "gone": {}}  # only our own write is read ahead of the cache
            assert lagging.gets == 0

            lagging.flowing.set()
            await store.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"step": "3"}}}, "default")

            async def caught_up() -> bool:
                found = await cached.get("v1", "ConfigMap", "a", "default")
                return bool(found["metadata"]["labels"] == {"step": "3"})
            await eventually(caught_up)  # a later write by someone else is read, not ours
            with pytest.raises(NotFound):
                await cached.get("v1", "ConfigMap", "gone", "default")
        finally:
            await informers.stop()


async def test_an_object_created_here_is_read_until_the_cache_has_it_and_not_after_it_is_gone(
        tmp_path: Path) -> None:
    """A reconcile woken again right after creating a pod must read that pod, not create it once more
    (AlreadyExists); once the informer is past the create, the cache decides (here: deleted by another)."""
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as store:
        lagging = StallableCluster(store)
        informers = SharedInformers(lagging)  # type: ignore[arg-type]
        cached = CachedCluster(lagging, informers)  # type: ignore[arg-type]
        try:
            with pytest.raises(NotFound):
                await cached.get("v1", "ConfigMap", "made", "default")  # starts the informer, synced empty
            lagging.flowing.clear()
            made = await cached.create(configmap("made", labels={"by": "us"}))
            await store.create(configmap("theirs"))  # created by another, not seen yet
            await asyncio.sleep(0.2)  # the store has told the informer nothing yet
            read = await cached.get("v1", "ConfigMap", "made", "default")
            assert (read["metadata"]["uid"], read["metadata"]["labels"]) == (made["metadata"]["uid"], {"by": "us"})
            with pytest.raises(NotFound):
                await cached.get("v1", "ConfigMap", "theirs", "default")  # only our own writes read ahead
            assert [o["metadata"]["name"] for o in (await cached.list("v1", "ConfigMap")).items] == []
            assert lagging.gets == 0

            await store.delete("v1", "ConfigMap", "made", "default")  # deleted by another before we saw it
            lagging.flowing.set()

            async def gone() -> bool:
                try:
                    await cached.get("v1", "ConfigMap", "made", "default")
                except NotFound:
                    return True
                return False
            await eventually(gone)  # the informer passed our create: the cache, which lacks it, decides
            assert (await cached.get("v1", "ConfigMap", "theirs", "default"))["metadata"]["name"] == "theirs"
        finally:
            await informers.stop()


def test_a_write_stands_in_for_a_missing_object_only_below_its_resource_version() -> None:
    now = [0.0]
    written = Written(lambda: now[0])
    written.remember("v1", "Pod", {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "10"}})
    assert written.unseen("v1", "Pod", "p", "ns", "9") is not None  # the cache has not reached it
    assert written.unseen("v1", "Pod", "q", "ns", "9") is None  # nothing of that name written here
    assert written.unseen("v1", "Pod", "p", "other", "9") is None
    assert written.unseen("v1", "Pod", "p", "ns", "10") is None  # reached: the cache lacks it, so it is gone
    assert written.unseen("v1", "Pod", "p", "ns", "9") is None  # and forgotten
    written.remember("v1", "Pod", {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "20"}})
    now[0] = WRITTEN_TTL + 1
    assert written.unseen("v1", "Pod", "p", "ns", "9") is None  # too long ago to trust


def test_remembered_writes_expire_oldest_first_without_rescanning() -> None:
    now = [0.0]
    written = Written(lambda: now[0])

    def write(name: str, version: int) -> None:
        written.remember("v1", "ConfigMap", {"metadata": {"name": name, "namespace": "default",
                                                          "resourceVersion": str(version)}})

    for n in range(5000):
        now[0] = n * 0.001  # 5,000 writes in 5 s: all young, all kept
        write(f"cm-{n}", n + 1)
    assert len(written) == 5000
    now[0] = 5.0 + WRITTEN_TTL - 2.5  # the first half is now older than the TTL
    write("cm-0", 9000)  # written again: moves to the young end
    write("fresh", 9001)
    assert 2400 < len(written) < 5000
    now[0] = 100.0 + WRITTEN_TTL
    for n in range(100):
        write(f"late-{n}", 10_000 + n)
    assert len(written) == 100  # everything older expired as new writes came in
    assert written.newer("v1", "ConfigMap", {"metadata": {"name": "late-5", "namespace": "default",
                                                          "resourceVersion": "1"}})["metadata"]["resourceVersion"] \
        == "10005"
