"""`EmbeddedCluster`: the `Cluster` protocol on one SQLite file, for embedded mode (`cdi serve`, the CLI).

Every verb resolves its kind in `cdi.cluster.kinds`, then runs as one transaction on the database
thread (`cdi.embedded.sqlite`): reads as snapshots, writes under the file's write lock through the
functions of `cdi.embedded.mutations`, so several processes can share the file. Each write takes the
next resourceVersion from a counter that only rises, records a row in the change log that
`cdi.embedded.watch` replays, and wakes this process's watchers. The change log is compacted as it
grows: rows older than both the newest `retain_changes` and `retain_for` go, and a watch from before
them raises `Gone`.

Objects are returned in the apiVersion the caller asked for; they are stored once per API group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from cdi.admission import Mutate
from cdi.admission import admit as default_admission
from cdi.cluster.errors import BadRequest, Invalid, MethodNotAllowed, NotFound
from cdi.cluster.kinds import DEFAULT_KINDS, KindRegistry, ResourceKind
from cdi.cluster.protocol import DeleteOptions, Object, ObjectList, PatchType, WatchEvent
from cdi.embedded import mutations, paging
from cdi.embedded.database import Database
from cdi.embedded.fields import parse_field_selector
from cdi.embedded.pods.paths import log_path
from cdi.embedded.reviews import DEFAULT_REVIEWS, Review
from cdi.embedded.selectors import parse_selector
from cdi.embedded.semantics import checked_copy
from cdi.embedded.sqlite import StoreUnavailable, Transaction
from cdi.embedded.wakeup import DirectoryWatch
from cdi.embedded.watch import Notifier, WatchStream

T = TypeVar("T")

_COMPACT_EVERY = 128  # resourceVersions between automatic compactions


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EmbeddedCluster:
    """A `Cluster` kept in an SQLite file; safe to share between processes. Close it when done."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utc_now, poll_interval: float = 0.1,
                 retain_changes: int = 10_000, retain_for: timedelta = timedelta(minutes=5),
                 busy_timeout: float = 30.0, kinds: KindRegistry = DEFAULT_KINDS,
                 admission: mutations.Admit = default_admission,
                 mutation: Mutate = mutations.no_mutation,
                 reviews: Mapping[tuple[str, str], Review] | None = None,
                 bookmark_interval: float = 60.0) -> None:
        self._db = Database(Path(path), busy_timeout=busy_timeout)
        self._clock = clock
        self._poll_interval = poll_interval
        self._retain_changes, self._retain_for = retain_changes, retain_for
        self._kinds = kinds
        self._admit = admission
        self._mutate = mutation
        self._reviews = dict(DEFAULT_REVIEWS if reviews is None else reviews)
        self._bookmark_interval = bookmark_interval
        self._notifier = Notifier()
        self._wakeup: DirectoryWatch | None = None
        self._wakeup_tried = False
        self._version_check: asyncio.Task[None] | None = None
        self._recheck = False
        self._data_version: int | None = None

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def kinds(self) -> KindRegistry:
        return self._kinds

    async def __aenter__(self) -> EmbeddedCluster:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """End every watch stream and release the database thread and connection."""
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        if self._version_check is not None:
            self._version_check.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreUnavailable):
                await self._version_check
        self._notifier.close()
        await self._db.close()

    def _watch_other_writers(self) -> None:
        """Start the inotify wake-up (`cdi.embedded.wakeup`) with the first watch stream."""
        if self._wakeup_tried:
            return
        self._wakeup_tried = True
        name = self._db.path.name
        self._wakeup = DirectoryWatch.start(self._db.path.parent, {name, f"{name}-wal"}, self._file_written)
        if self._wakeup is not None:
            self._file_written()  # the baseline version, so the first other writer is seen as one

    def _file_written(self) -> None:
        if self._version_check is not None and not self._version_check.done():
            self._recheck = True  # one more check once the running one ends; never a queue of them
            return
        self._version_check = asyncio.get_running_loop().create_task(self._check_data_version())

    async def _check_data_version(self) -> None:
        while True:
            self._recheck = False
            try:
                version = await self._db.data_version()
            except StoreUnavailable:
                return
            if self._data_version is not None and version != self._data_version:
                self._notifier.notify()
            self._data_version = version
            if not self._recheck:
                return

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object:
        served = self._stored_kind(api_version, kind)
        key = mutations.key_for(served, name, namespace)
        obj = await self._db.read(lambda tx: tx.get(key))
        if obj is None:
            raise NotFound(f'{served.resource} "{name}" not found')
        return _as_version(obj, api_version)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None, *,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> ObjectList:
        served = self._stored_kind(api_version, kind)
        namespace = namespace or None  # "" means every namespace, as in kubectl
        _check_scope(served, namespace)
        selector = parse_selector(label_selector)
        fields = parse_field_selector(field_selector, served.group, served.kind, api_version)

        def read(tx: Transaction) -> tuple[list[Object], int, paging.Cursor | None]:
            cursor = paging.decode(continue_token, tx.compacted_rv()) if continue_token else None
            return tx.objects(served.group, served.kind, namespace), tx.current_rv(), cursor

        items, resource_version, cursor = await self._db.read(read)
        matching = [obj for obj in items if selector.matches(obj["metadata"].get("labels")) and fields.matches(obj)]
        shown, token, list_version = paging.page(matching, limit, cursor, resource_version)
        return ObjectList([_as_version(obj, api_version) for obj in shown], str(list_version), token)

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        served = self._stored_kind(api_version, kind)
        namespace = namespace or None
        _check_scope(served, namespace)
        self._watch_other_writers()
        return WatchStream(self._db, served, api_version, after=_parse_resource_version(resource_version),
                           namespace=namespace, selector=parse_selector(label_selector),
                           fields=parse_field_selector(field_selector, served.group, served.kind, api_version),
                           notifier=self._notifier, poll_interval=self._poll_interval,
                           bookmark_interval=self._bookmark_interval if allow_bookmarks else None)

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object:
        served, api_version = self._kind_of(obj)
        if (served.group, served.kind) == ("", "Binding"):
            binding = checked_copy(obj, served)
            return await self._write(lambda tx, now: mutations.bind_pod(tx, self._kinds, binding, now))
        if served.create_only:
            return _as_version(self._review(served, checked_copy(obj, served)), api_version)
        doc = checked_copy(obj, served)
        written = await self._write(lambda tx, now: mutations.create(tx, self._kinds, served, doc, now, self._admit,
                                                                   mutate=self._mutate))
        return _as_version(written, api_version)

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._update(obj, status_only=False, field_manager=field_manager)

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._update(obj, status_only=True, field_manager=field_manager)

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object:
        return await self._patch(api_version, kind, name, patch, namespace, status_only=False,
                                 patch_type=patch_type, field_manager=field_manager, force=force)

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object:
        return await self._patch(api_version, kind, name, patch, namespace, status_only=True,
                                 patch_type=patch_type, field_manager=field_manager, force=force)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None:
        served = self._stored_kind(api_version, kind)
        key = mutations.key_for(served, name, namespace)
        await self._write(lambda tx, now: mutations.delete(tx, self._kinds, served, key, now, options))

    async def pod_logs(self, name: str, namespace: str, *, container: str | None = None, previous: bool = False,
                       tail_lines: int | None = None) -> str:
        """A container's log as the pod runner wrote it under the store's directory, like `kubectl logs`."""
        pod = await self.get("v1", "Pod", name, namespace)
        containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
        chosen = container or (containers[0] if len(containers) == 1 else None)
        if chosen is None or chosen not in containers:
            raise BadRequest(f"a container name must be specified for pod {name}, choose one of: {containers}"
                             if chosen is None else f"container {chosen} is not valid for pod {name}")
        path = log_path(self._db.path.parent, namespace, name, chosen, previous)
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            if previous:
                raise BadRequest(f'previous terminated container "{chosen}" in pod "{name}" not found') from None
            return ""
        if tail_lines is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
        return text

    async def served(self, api_version: str, kind: str) -> bool:
        try:
            self._kinds.lookup(api_version, kind)
        except NotFound:
            return False
        return True

    async def collect_garbage(self) -> None:
        """Run the garbage collector now (deletes already run it; this catches anything left over)."""
        await self._write(lambda tx, now: mutations.collect_garbage(tx, self._kinds, now))

    async def compact(self) -> int:
        """Drop change-log rows past the retention limits now; returns how many went."""
        now = self._clock()
        return await self._db.write(lambda tx: self._compact(tx, now), now.timestamp())

    def _stored_kind(self, api_version: str, kind: str) -> ResourceKind:
        """The kind, for verbs other than create: a create-only kind has nothing stored to read or change."""
        served = self._kinds.lookup(api_version, kind)
        if served.create_only:
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        return served

    def _review(self, kind: ResourceKind, request: Object) -> Object:
        """A create-only kind answered in the create response; nothing is stored."""
        review = self._reviews.get((kind.group, kind.kind))
        if review is None:
            raise BadRequest(f"{kind.resource}: this server answers no {kind.kind}")
        return review(request)

    async def _update(self, obj: Object, *, status_only: bool, field_manager: str | None) -> Object:
        served, api_version = self._kind_of(obj)
        self._stored_kind(api_version, served.kind)
        if status_only:
            _require_status(served, obj.get("metadata", {}).get("name"))
        doc = checked_copy(obj, served)
        written = await self._write(
            lambda tx, now: mutations.update(tx, self._kinds, served, doc, status_only=status_only, now=now,
                                             admit=self._admit, field_manager=field_manager, mutate=self._mutate))
        return _as_version(written, api_version)

    async def _patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None, *,
                     status_only: bool, patch_type: PatchType, field_manager: str | None, force: bool) -> Object:
        served = self._stored_kind(api_version, kind)
        if status_only:
            _require_status(served, name)
        key = mutations.key_for(served, name, namespace)
        written = await self._write(lambda tx, now: mutations.patch(
            tx, self._kinds, served, key, patch, status_only=status_only, now=now, admit=self._admit,
            patch_type=patch_type, field_manager=field_manager, force=force, mutate=self._mutate))
        return _as_version(written, api_version)

    async def _write(self, fn: Callable[[Transaction, datetime], T]) -> T:
        now = self._clock()

        written: set[tuple[str, str]] = set()

        def run(tx: Transaction) -> T:
            result = fn(tx, now)
            written.update(tx.kinds_written)
            if tx.assigned_a_multiple_of(_COMPACT_EVERY):
                self._compact(tx, now)
            return result

        result = await self._db.write(run, now.timestamp())
        self._notifier.notify(written)
        return result

    def _compact(self, tx: Transaction, now: datetime) -> int:
        return tx.compact(self._retain_changes, (now - self._retain_for).timestamp())

    def _kind_of(self, obj: Object) -> tuple[ResourceKind, str]:
        api_version, kind = (obj.get("apiVersion"), obj.get("kind")) if isinstance(obj, Mapping) else (None, None)
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            raise Invalid("an object needs apiVersion and kind")
        return self._kinds.lookup(api_version, kind), api_version


def _check_scope(kind: ResourceKind, namespace: str | None) -> None:
    if namespace and not kind.namespaced:
        raise Invalid(f"{kind.kind} is cluster-scoped: it takes no namespace (got {namespace!r})")


def _require_status(kind: ResourceKind, name: Any) -> None:
    if not kind.status_subresource:
        raise NotFound(f"the server could not find the requested resource ({kind.resource} {name}/status): "
                       f"{kind.kind} has no status subresource; update the whole object instead")


def _parse_resource_version(resource_version: str) -> int | None:
    """None for "" and "0" (start with the current objects), else the integer; `Invalid` otherwise."""
    if resource_version in ("", "0"):
        return None
    if not resource_version.isdigit():
        raise Invalid(f"invalid resourceVersion {resource_version!r}: expected an integer")
    return int(resource_version)


def _as_version(obj: Object, api_version: str) -> Object:
    obj["apiVersion"] = api_version
    return obj
