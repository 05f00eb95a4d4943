"""`CachedCluster`: reads from informer caches, writes to the API server — controller-runtime's client.

Reconcilers get this instead of the raw `Cluster`: `get` and `list` of a kind are served from a shared,
cluster-wide informer of that kind (started on first use; the first read waits until it has listed), so
a reconcile costs no request to the API server unless it writes. Writes, deletes, reviews and logs go
straight through; discovery answers (`served`) are kept for `SERVED_TTL` seconds, as client-go's cached
discovery keeps them (a CRD installed later is seen within that time). Reads the cache cannot answer
faithfully — a field selector, paging — also go to the server. Objects read through the cache carry no
`metadata.managedFields` (see `cdi.runtime.informer`); `direct` reads them from the server. Like
controller-runtime's cache, reads may lag a write by a moment: reconcilers already treat
`AlreadyExists`/`Conflict`/`NotFound` after a write as "try again", and the watch that brings their own
write wakes them again.

One lag is not harmless: informers of different kinds catch up independently, so a reconcile woken by
the Pod informer (its worker pod deleted) could read the claim as it was before this process's own
write that recorded the pod's success, and start the pod again. So, like client-go's mutation cache,
what this process wrote is remembered (`Written`) and a read returns it instead of the cached object while
the cache still holds an older version of that object (by resourceVersion; for `WRITTEN_TTL` at most).
An object the cache does not hold yet is read from our write only while the informer has not reached the
write's resourceVersion (its watch delivers a kind's changes in order): a reconcile that just created a pod
and is woken again before the pod's ADDED arrives reads the pod instead of creating it a second time
(AlreadyExists; half a request per DataVolume in the scale benchmark when the controllers keep up). Once the
informer is past the write, the cache decides: an object it does not hold was deleted. `get` reads ahead
this way; `list` and `owned_by` return what the cache holds, with our newer versions of those objects.
Whatever reaches the cache later wins.
"""

from __future__ import annotations

import builtins
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions, Object, ObjectList, PatchType, WatchEvent
from cdi.runtime.informer import Informer, SharedInformers, json_copy, without_managed_fields
from cdi.runtime.types import Key

SERVED_TTL = 30.0
WRITTEN_TTL = 30.0  # how long a write of ours may stand in for an older cached object


def _version_number(version: str) -> int | None:
    try:
        return int(version)
    except ValueError:
        return None  # not an integer: never compared, the cache's object is read as it is


def _resource_version(obj: Object) -> int | None:
    return _version_number(str((obj.get("metadata") or {}).get("resourceVersion") or ""))


class Written:
    """The objects this process wrote last, keyed by group, kind, namespace and name, oldest write first:
    each write moves its object to the end, and writes older than `WRITTEN_TTL` are dropped from the front."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._objects: dict[tuple[str, str, str, str], tuple[Object, int, float]] = {}

    def __len__(self) -> int:
        return len(self._objects)

    @staticmethod
    def _named(api_version: str, kind: str, name: str, namespace: str | None) -> tuple[str, str, str, str]:
        return api_version.rpartition("/")[0], kind, namespace or "", name

    @classmethod
    def _key(cls, api_version: str, kind: str, obj: Object) -> tuple[str, str, str, str]:
        meta = obj.get("metadata") or {}
        return cls._named(api_version, kind, str(meta.get("name") or ""), str(meta.get("namespace") or ""))

    def remember(self, api_version: str, kind: str, obj: Object) -> None:
        version = _resource_version(obj)
        if version is None:
            return
        key, now = self._key(api_version, kind, obj), self._clock()
        known = self._objects.get(key)
        if known is None or known[1] < version:
            self._objects.pop(key, None)
            self._objects[key] = (json_copy(without_managed_fields(obj)), version, now)
        self._expire(now)

    def _expire(self, now: float) -> None:
        # Oldest first: stop at the first write young enough (once past a few thousand remembered writes,
        # rebuilding the whole table on every write cost the 1,000-DataVolume benchmark ~0.5 ms a write).
        for key, (_, _, at) in list(itertools.islice(self._objects.items(), 64)):
            if now - at <= WRITTEN_TTL:
                return
            del self._objects[key]

    def unseen(self, api_version: str, kind: str, name: str, namespace: str | None,
               cache_version: str) -> Object | None:
        """What this process wrote of an object the cache does not hold, if the cache (at `cache_version`)
        has not reached that write yet: it has not seen the object's ADDED. None once it has (then the
        object is gone) or when nothing of it was written here lately."""
        key = self._named(api_version, kind, name, namespace)
        known = self._objects.get(key)
        if known is None:
            return None
        mine, version, at = known
        reached = _version_number(cache_version)
        if reached is None or reached >= version or self._clock() - at > WRITTEN_TTL:
            del self._objects[key]
            return None
        copied: Object = json_copy(mine)
        return copied

    def forget(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        self._objects.pop(self._named(api_version, kind, name, namespace), None)

    def newer(self, api_version: str, kind: str, cached: Object) -> Object:
        """`cached`, or what this process wrote of it when that is newer."""
        key = self._key(api_version, kind, cached)
        known = self._objects.get(key)
        if known is None:
            return cached
        mine, version, at = known
        theirs = _resource_version(cached)
        if theirs is None or version <= theirs or self._clock() - at > WRITTEN_TTL:
            del self._objects[key]  # the cache caught up (or moved past it), or too long ago to trust
            return cached
        copied: Object = json_copy(mine)
        return copied


class CachedCluster:
    """A `Cluster` whose reads come from `informers` and whose writes go to `cluster`."""

    def __init__(self, cluster: Cluster, informers: SharedInformers, *, uncached: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cluster, self._informers = cluster, informers
        self._uncached = uncached  # kinds always read from the server (e.g. Secrets, not worth caching)
        self._clock = clock
        self._served: dict[tuple[str, str], tuple[bool, float]] = {}  # answer, when it was asked
        self._written = Written(clock)

    @property
    def direct(self) -> Cluster:
        """The uncached cluster, for the rare read that must see the server's latest state."""
        return self._cluster

    async def _synced(self, api_version: str, kind: str) -> Informer | None:
        if kind in self._uncached:
            return None
        informer = self._informers.informer(api_version, kind)
        informer.start()
        await informer.wait_synced()
        return informer

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object:
        informer = await self._synced(api_version, kind)
        if informer is None:
            return await self._cluster.get(api_version, kind, name, namespace)
        cached = informer.get(Key(namespace or "", name))
        if cached is not None:
            found = self._written.newer(api_version, kind, cached)
        elif (ours := self._written.unseen(api_version, kind, name, namespace, informer.resource_version)) is not None:
            found = ours
        else:
            raise NotFound(f'{kind.lower()} "{name}" not found')
        found["apiVersion"] = api_version
        return found

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None, *,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> ObjectList:
        if field_selector or limit or continue_token or isinstance(label_selector, str):
            return await self._cluster.list(api_version, kind, namespace, label_selector,
                                            field_selector=field_selector, limit=limit, continue_token=continue_token)
        informer = await self._synced(api_version, kind)
        if informer is None:
            return await self._cluster.list(api_version, kind, namespace, label_selector)
        items = [self._written.newer(api_version, kind, item)
                 for item in informer.list(namespace or None, label_selector)]
        for item in items:
            item["apiVersion"] = api_version
        return ObjectList(items, informer.resource_version)

    async def owned_by(self, api_version: str, kind: str, uid: str) -> builtins.list[Object]:
        """The objects of a kind that name `uid` among their owners, from the cache's owner index."""
        informer = await self._synced(api_version, kind)
        if informer is None:
            listed = await self._cluster.list(api_version, kind)
            return [obj for obj in listed.items if any(ref.get("uid") == uid for ref in
                                                       obj["metadata"].get("ownerReferences") or [])]
        return [self._written.newer(api_version, kind, obj) for obj in informer.owned_by(uid)]

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        return self._cluster.watch(api_version, kind, resource_version=resource_version, namespace=namespace,
                                   label_selector=label_selector, field_selector=field_selector,
                                   allow_bookmarks=allow_bookmarks)

    def _wrote(self, sent: Object, stored: Object) -> Object:
        self._written.remember(str(sent.get("apiVersion") or ""), str(sent.get("kind") or ""), stored)
        return stored

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return self._wrote(obj, await self._cluster.create(obj, field_manager=field_manager))

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return self._wrote(obj, await self._cluster.update(obj, field_manager=field_manager))

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return self._wrote(obj, await self._cluster.update_status(obj, field_manager=field_manager))

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object:
        return self._wrote({"apiVersion": api_version, "kind": kind},
                           await self._cluster.patch(api_version, kind, name, patch, namespace, patch_type=patch_type,
                                                     field_manager=field_manager, force=force))

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object:
        return self._wrote({"apiVersion": api_version, "kind": kind},
                           await self._cluster.patch_status(api_version, kind, name, patch, namespace,
                                                            patch_type=patch_type, field_manager=field_manager,
                                                            force=force))

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None:
        self._written.forget(api_version, kind, name, namespace)
        await self._cluster.delete(api_version, kind, name, namespace, options=options)

    async def pod_logs(self, name: str, namespace: str, *, container: str | None = None, previous: bool = False,
                       tail_lines: int | None = None) -> str:
        return await self._cluster.pod_logs(name, namespace, container=container, previous=previous,
                                            tail_lines=tail_lines)

    async def served(self, api_version: str, kind: str) -> bool:
        now = self._clock()
        known = self._served.get((api_version, kind))
        if known is not None and now - known[1] < SERVED_TTL:
            return known[0]
        answer = await self._cluster.served(api_version, kind)
        self._served[(api_version, kind)] = (answer, now)
        return answer
