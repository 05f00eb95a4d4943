"""`CachedCluster`: reads from informer caches, writes to the API server — controller-runtime's client.

Reconcilers get this instead of the raw `Cluster`: `get` and `list` of a kind are served from a shared,
cluster-wide informer of that kind (started on first use; the first read waits until it has listed), so
a reconcile costs no request to the API server unless it writes. Writes, deletes, reviews and logs go
straight through; discovery answers (`served`) are kept for `SERVED_TTL` seconds, as client-go's cached
discovery keeps them (a CRD installed later is seen within that time). Reads the cache cannot answer
faithfully — a field selector, paging — also go to the server. Like controller-runtime's cache, reads may
lag a write by a moment: reconcilers already treat `AlreadyExists`/`Conflict`/`NotFound` after a write as
"try again", and the watch that brings their own write wakes them again.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions, Object, ObjectList, PatchType, WatchEvent
from cdi.runtime.informer import Informer, SharedInformers
from cdi.runtime.types import Key

SERVED_TTL = 30.0


class CachedCluster:
    """A `Cluster` whose reads come from `informers` and whose writes go to `cluster`."""

    def __init__(self, cluster: Cluster, informers: SharedInformers, *, uncached: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cluster, self._informers = cluster, informers
        self._uncached = uncached  # kinds always read from the server (e.g. Secrets, not worth caching)
        self._clock = clock
        self._served: dict[tuple[str, str], tuple[bool, float]] = {}  # answer, when it was asked

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
        found = informer.get(Key(namespace or "", name))
        if found is None:
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
        items = informer.list(namespace or None, label_selector)
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
        return informer.owned_by(uid)

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        return self._cluster.watch(api_version, kind, resource_version=resource_version, namespace=namespace,
                                   label_selector=label_selector, field_selector=field_selector,
                                   allow_bookmarks=allow_bookmarks)

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._cluster.create(obj, field_manager=field_manager)

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._cluster.update(obj, field_manager=field_manager)

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._cluster.update_status(obj, field_manager=field_manager)

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object:
        return await self._cluster.patch(api_version, kind, name, patch, namespace, patch_type=patch_type,
                                         field_manager=field_manager, force=force)

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object:
        return await self._cluster.patch_status(api_version, kind, name, patch, namespace, patch_type=patch_type,
                                                field_manager=field_manager, force=force)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None:
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
