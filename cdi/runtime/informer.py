"""Informers: list + watch one kind into a local cache and tell handlers about every change.

An `Informer` lists its kind (optionally one namespace and a label selector), then watches from the
list's resourceVersion, applying each event to its cache before calling the handlers registered with
`add_handler` as `handler(event_type, obj)`. Like client-go's reflector it survives a lost watch: on
`Gone` or any other error it lists again and compares the fresh list with its cache, emitting
DELETED for objects that vanished while it was blind and ADDED/MODIFIED for new and changed ones, so
handlers never miss a change. A watch that simply ends is resumed from the last resourceVersion seen.
Retries after repeated failures back off exponentially.

The cache keeps two indexes, by namespace and by owner uid, so that a controller's "the claims of this
namespace" or "what this DataVolume owns" costs no scan of every object; label selectors filter
within the namespace's set. Watches ask for bookmarks, which only move the resume point.

Cached objects carry no `metadata.managedFields` (controller-runtime's `TransformStripManagedFields`):
no controller reads field ownership, and on a real API server it is a large part of every object, so
keeping it made every cached read's copy, every parse and every garbage-collector pass longer. Handlers
see the objects as cached. Read through `Cluster` itself when the field ownership matters.

The cache serves the `Reader` protocol of `cdi.runtime.types`; `SharedInformers` hands out one
informer per (kind, namespace, selector) so controllers and readers share them. Controllers
(`cdi.runtime.controller`) register handlers; the manager (`cdi.runtime.manager`) starts and stops
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from cdi.cluster.errors import Gone
from cdi.cluster.protocol import Cluster, EventType, Object, WatchEvent
from cdi.runtime.types import Key

logger = logging.getLogger(__name__)

Handler = Callable[[EventType, Object], None]
YIELD_EVERY = 0.005  # seconds of applying watch events after which the informer lets other tasks run


class Informer:
    """A watched cache of one kind; implements `Reader`. Start it with `start`, end it with `stop`."""

    def __init__(self, cluster: Cluster, api_version: str, kind: str, *, namespace: str | None = None,
                 label_selector: Mapping[str, str] | None = None, retry_delay: float = 0.5,
                 max_retry_delay: float = 30.0) -> None:
        self.api_version, self.kind = api_version, kind
        self.namespace = namespace or None
        self.label_selector = dict(label_selector) if label_selector else None
        self._cluster = cluster
        self._retry_delay, self._max_retry_delay = retry_delay, max_retry_delay
        self._cache: dict[Key, Object] = {}
        self._by_namespace: dict[str, set[Key]] = {}
        self._by_owner: dict[str, set[Key]] = {}
        self._handlers: list[Handler] = []
        self._resource_version = ""
        self._failures = 0  # consecutive list/watch attempts that brought no event
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        scope = f" in {self.namespace}" if self.namespace else ""
        selector = f" matching {self.label_selector}" if self.label_selector else ""
        return f"<Informer {self.kind}.{self.api_version}{scope}{selector}>"

    @property
    def resource_version(self) -> str:
        """The resourceVersion the cache reflects ("" before the first list)."""
        return self._resource_version

    def add_handler(self, handler: Handler) -> None:
        """Call `handler` for every later change; if the cache is already filled, it first sees each
        cached object as ADDED. Handlers must not modify the objects they receive."""
        self._handlers.append(handler)
        for obj in list(self._cache.values()):
            self._call(handler, "ADDED", obj)

    def owned_by(self, uid: str) -> list[Object]:
        """The cached objects whose ownerReferences name `uid`."""
        return [json_copy(self._cache[key]) for key in sorted(self._by_owner.get(uid, ()))]

    def _put(self, key: Key, obj: Object) -> Object | None:
        old = self._remove(key)
        self._cache[key] = obj
        self._by_namespace.setdefault(key.namespace, set()).add(key)
        for uid in _owner_uids(obj):
            self._by_owner.setdefault(uid, set()).add(key)
        return old

    def _remove(self, key: Key) -> Object | None:
        old = self._cache.pop(key, None)
        if old is not None:
            _discard(self._by_namespace, key.namespace, key)
            for uid in _owner_uids(old):
                _discard(self._by_owner, uid, key)
        return old

    def get(self, key: Key) -> Object | None:
        obj = self._cache.get(key)
        return json_copy(obj) if obj is not None else None

    def peek(self, key: Key) -> Object | None:
        """The cached object itself, not a copy: for a quick look (a predicate) that must not change it."""
        return self._cache.get(key)

    def list(self, namespace: str | None = None, label_selector: Mapping[str, str] | None = None) -> list[Object]:
        wanted = dict(label_selector or {})
        keys = self._by_namespace.get(namespace, set()) if namespace else self._cache.keys()
        return [json_copy(self._cache[key]) for key in sorted(keys) if _matches(self._cache[key], wanted)]

    def has_synced(self) -> bool:
        """True once the first list has been applied to the cache."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def start(self) -> None:
        """Run the list+watch loop in a task until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=repr(self))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """List, then watch; re-list or re-watch after every interruption, forever (until cancelled)."""
        must_list = True
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                await self._watch()
            except Gone as error:
                logger.info("%r: watch expired (%s); listing again", self, error.message)
                must_list = True
            except Exception as error:
                logger.warning("%r: list/watch failed: %s: %s; listing again", self, type(error).__name__, error)
                logger.debug("%r: list/watch failure", self, exc_info=True)
                must_list = True
            self._failures += 1  # reset by every event, so only fruitless attempts back off
            await asyncio.sleep(self._delay(self._failures))

    async def _relist(self) -> None:
        """Replace the cache with a fresh list, telling handlers what changed since the last one."""
        listed = await self._cluster.list(self.api_version, self.kind, self.namespace, self.label_selector)
        fresh = {Key.of(obj): without_managed_fields(obj) for obj in listed.items}
        gone = [key for key in self._cache if key not in fresh]
        for key in gone:
            removed = self._remove(key)
            assert removed is not None
            self._dispatch("DELETED", removed)
        for key, obj in fresh.items():
            old = self._put(key, obj)
            if old is None:
                self._dispatch("ADDED", obj)
            elif _version(old) != _version(obj):
                self._dispatch("MODIFIED", obj)
        self._resource_version = listed.resource_version
        self._synced.set()

    async def _watch(self) -> None:
        """Apply watch events until the stream ends or fails (raises)."""
        stream = self._cluster.watch(self.api_version, self.kind, resource_version=self._resource_version,
                                     namespace=self.namespace, label_selector=self.label_selector,
                                     allow_bookmarks=True)
        try:
            since = time.monotonic()
            async for event in stream:
                self._apply(event)
                # A stream hands over what it has buffered without suspending (a batch of the store's change
                # log, the lines an API server sent at once): let the loop run between events now and then,
                # or every reconcile waits until hundreds of events are applied (stalls of 200 ms seen).
                if time.monotonic() - since >= YIELD_EVERY:
                    await asyncio.sleep(0)
                    since = time.monotonic()
        finally:
            await _close(stream)

    def _apply(self, event: WatchEvent) -> None:
        obj = without_managed_fields(event.object)
        if event.type == "BOOKMARK":
            self._resource_version = _version(obj) or self._resource_version
            return
        key = Key.of(obj)
        if event.type == "DELETED":
            self._remove(key)
        else:
            self._put(key, obj)
        self._resource_version = _version(obj) or self._resource_version
        self._failures = 0
        self._dispatch(event.type, obj)

    def _dispatch(self, event_type: EventType, obj: Object) -> None:
        for handler in list(self._handlers):
            self._call(handler, event_type, obj)

    def _call(self, handler: Handler, event_type: EventType, obj: Object) -> None:
        try:
            handler(event_type, obj)
        except Exception:  # one broken handler must not stop the others or the watch
            logger.exception("%r: handler %r failed on %s %s", self, handler, event_type, Key.of(obj))

    def _delay(self, failures: int) -> float:
        """No wait after one fruitless attempt; then `retry_delay` doubling up to `max_retry_delay`."""
        if failures <= 1:
            return 0.0
        return float(min(self._retry_delay * 2 ** min(failures - 2, 32), self._max_retry_delay))


class SharedInformers:
    """One informer per (apiVersion, kind, namespace, label selector), shared by every user."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._informers: dict[tuple[str, str, str | None, tuple[tuple[str, str], ...]], Informer] = {}
        self._started = False

    def __iter__(self) -> Iterator[Informer]:
        return iter(list(self._informers.values()))

    def informer(self, api_version: str, kind: str, namespace: str | None = None,
                 label_selector: Mapping[str, str] | None = None) -> Informer:
        """The shared informer for this scope, created (and started, if the others run) on first use."""
        ident = (api_version, kind, namespace or None, tuple(sorted((label_selector or {}).items())))
        found = self._informers.get(ident)
        if found is None:
            found = self._informers[ident] = Informer(self._cluster, api_version, kind, namespace=namespace,
                                                      label_selector=label_selector)
            if self._started:
                found.start()
        return found

    def start(self) -> None:
        self._started = True
        for informer in self:
            informer.start()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(informer.wait_synced() for informer in self))

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(informer.stop() for informer in self))


async def _close(stream: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if callable(aclose):
        await aclose()


def without_managed_fields(obj: Object) -> Object:
    """`obj` without `metadata.managedFields` (a shallow copy when it has them; `obj` is not changed)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON document, for readers that may change what they get. Cached objects are
    JSON (dicts, lists, scalars: no cycles, no shared parts), so this skips `copy.deepcopy`'s memo
    bookkeeping, which made copying a DataVolume 3× slower and was the controllers' largest CPU cost at
    1,000 objects (bench/scale.py)."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def _owner_uids(obj: Object) -> list[str]:
    return [str(ref.get("uid")) for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if ref.get("uid")]


def _discard(index: dict[str, set[Key]], value: str, key: Key) -> None:
    keys = index.get(value)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[value]


def _version(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _matches(obj: Object, wanted: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(name) == value for name, value in wanted.items())
