"""Watches on the embedded store: "every change after resourceVersion N", replayed from the change log.

`EmbeddedCluster.watch` returns a `WatchStream`. Each step reads the change log past the stream's
cursor in one read transaction, together with the newest resourceVersion and the compaction horizon,
so a stream never skips a change: if rows it still needs were compacted away it raises `Gone`, as the
API server answers 410 Expired. When it has caught up it sleeps until this process commits a write
of its kind (`Notifier`) or `poll_interval` passes, which is how it sees writes made by other processes sharing
the file. A stream holds no task, thread or connection of its own, so a consumer may simply stop
iterating; `aclose` ends it explicitly and closing the cluster ends every stream.

With `bookmark_interval` set (the client asked for bookmarks), a stream that has caught up sends a
BOOKMARK event (only apiVersion, kind and the resourceVersion it has seen up to) at most that often,
so a client can restart its watch from there instead of from an older version.

With a label selector, a modification that makes an object match is delivered as ADDED and one that
makes it stop matching as DELETED, as the API server's watch cache does. Starting from "" or "0"
first replays the objects that exist when iteration begins as ADDED events, as Kubernetes does; the
stream reads nothing before its first `__anext__`, so pass a list's resourceVersion to see every change
made after a given moment.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from cdi.cluster.errors import Gone
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Object, WatchEvent
from cdi.embedded.database import Database
from cdi.embedded.fields import EVERYTHING, FieldSelector
from cdi.embedded.selectors import Selector
from cdi.embedded.sqlite import Change, StoreUnavailable, Transaction

_BATCH = 500


class Notifier:
    """Wakes this process's watch streams as soon as a local write commits: only the streams of the kinds
    it wrote (a write of an Event does not send every DataVolume and Pod stream to read the change log),
    or all of them for a commit whose kinds are unknown (another process's)."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._closed = False

    def current(self, group: str, kind: str) -> asyncio.Event:
        """The event the next `notify` of this kind sets; take it before reading so no wake-up is missed."""
        event = self._events.get((group, kind))
        if event is None:
            event = self._events[(group, kind)] = asyncio.Event()
        return event

    def notify(self, kinds: Iterable[tuple[str, str]] | None = None) -> None:
        """Wake the streams of `kinds` ((group, kind) pairs), or every stream with None."""
        for key in (list(self._events) if kinds is None else kinds):
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def close(self) -> None:
        self._closed = True
        self.notify()

    def is_closed(self) -> bool:
        return self._closed


@dataclass(frozen=True)
class _Batch:
    changes: list[Change]
    current: int
    compacted: int
    snapshot: list[Object] | None


class WatchStream(AsyncIterator[WatchEvent]):
    """An endless async iterator of the changes to one kind after a resourceVersion."""

    def __init__(self, db: Database, kind: ResourceKind, api_version: str, *, after: int | None,
                 namespace: str | None, selector: Selector, notifier: Notifier, poll_interval: float,
                 fields: FieldSelector = EVERYTHING, bookmark_interval: float | None = None) -> None:
        self._db, self._kind, self._api_version = db, kind, api_version
        self._cursor = after  # None: replay the current objects first
        self._namespace, self._selector, self._fields = namespace, selector, fields
        self._bookmark_interval = bookmark_interval
        self._last_sent = time.monotonic()
        self._notifier, self._poll_interval = notifier, poll_interval
        self._pending: deque[WatchEvent] = deque()
        self._done = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            if self._done or self._notifier.is_closed():
                self._done = True
                raise StopAsyncIteration
            wake = self._notifier.current(self._kind.group, self._kind.kind)
            try:
                batch = await self._db.read(self._read)
            except StoreUnavailable:
                if self._notifier.is_closed():  # the cluster closed while this read was queued
                    continue
                raise
            full = self._absorb(batch)
            if not self._pending and not full:
                if self._bookmark_due():
                    self._pending.append(self._bookmark())
                    break
                await self._sleep(wake)
        self._last_sent = time.monotonic()
        return self._pending.popleft()

    def _bookmark_due(self) -> bool:
        return (self._bookmark_interval is not None and self._cursor is not None
                and time.monotonic() - self._last_sent >= self._bookmark_interval)

    def _bookmark(self) -> WatchEvent:
        return WatchEvent("BOOKMARK", {"apiVersion": self._api_version, "kind": self._kind.kind,
                                       "metadata": {"resourceVersion": str(self._cursor)}})

    async def aclose(self) -> None:
        """Stop the stream; later iteration ends at once."""
        self._done = True
        self._pending.clear()

    def _read(self, tx: Transaction) -> _Batch:
        current, compacted = tx.current_rv(), tx.compacted_rv()
        if self._cursor is None:
            return _Batch([], current, compacted, tx.objects(self._kind.group, self._kind.kind, self._namespace))
        changes = tx.changes_after(self._cursor, self._kind.group, self._kind.kind, self._namespace, _BATCH)
        return _Batch(changes, current, compacted, None)

    def _absorb(self, batch: _Batch) -> bool:
        """Queue the batch's events and move the cursor; True if more rows may be waiting."""
        if batch.snapshot is not None:
            self._pending.extend(WatchEvent("ADDED", self._as_requested(obj)) for obj in batch.snapshot
                                 if self._matches(obj))
            self._cursor = batch.current
            return False
        cursor = self._cursor or 0
        if cursor < batch.compacted:
            self._done = True
            raise Gone(f"too old resource version: {cursor} ({batch.compacted})")
        for change in batch.changes:
            event = self._event_for(change)
            if event is not None:
                self._pending.append(event)
            cursor = change.resource_version
        full = len(batch.changes) == _BATCH
        self._cursor = cursor if full else max(cursor, batch.current)
        return full

    def _event_for(self, change: Change) -> WatchEvent | None:
        obj = self._as_requested(change.object)
        matches = self._matches(change.object)
        if change.type == "MODIFIED" and (self._selector.requirements or self._fields.requirements):
            matched = change.previous is not None and self._matches(change.previous)
            if matched and not matches:
                return WatchEvent("DELETED", obj)
            if matches and not matched:
                return WatchEvent("ADDED", obj)
        return WatchEvent(change.type, obj) if matches else None

    def _matches(self, obj: Object) -> bool:
        return self._selector.matches(_labels(obj)) and self._fields.matches(obj)

    def _as_requested(self, obj: Object) -> Object:
        obj["apiVersion"] = self._api_version
        return obj

    async def _sleep(self, wake: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(self._poll_interval):
                await wake.wait()
        except TimeoutError:
            pass


def _labels(obj: Object) -> dict[str, str]:
    labels: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels
