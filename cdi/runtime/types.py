"""The small vocabulary controllers are written in: keys, results, watch declarations and the clock.

A controller is a `Reconciler` for one primary kind plus the `Watch`es that map changes of other
kinds to primary keys. The runtime (`cdi.runtime.controller`, `cdi.runtime.manager`) owns informers,
queues and workers; reconcilers read current state through the cache (`Reader`) or the cluster, and
never trust the event that woke them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cdi.cluster.protocol import Object


@dataclass(frozen=True, order=True)
class Key:
    """A namespaced name; `namespace` is "" for cluster-scoped kinds."""

    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, object]) -> Key:
        meta = obj.get("metadata") or {}
        assert isinstance(meta, Mapping)
        return cls(str(meta.get("namespace") or ""), str(meta["name"]))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: nothing, or to be run again after `requeue_after` seconds.
    Raising an exception means "retry with per-key exponential backoff"."""

    requeue_after: float | None = None


DONE = Result()


class Reconciler(Protocol):
    async def reconcile(self, key: Key) -> Result: ...


@dataclass(frozen=True)
class Watch:
    """Changes to objects of (`api_version`, `kind`) enqueue the keys `map_to_keys` returns.
    For the primary kind itself the mapping is the object's own key."""

    api_version: str
    kind: str
    map_to_keys: Callable[[Object], Iterable[Key]]
    namespace: str | None = None
    label_selector: Mapping[str, str] | None = None
    # Enqueue only keys whose primary the controller's predicate accepts (or that are not cached): a
    # DataVolume's claim then wakes only the controller of that DataVolume's kind of source.
    only_served: bool = False


def owner_keys(owner_kind: str) -> Callable[[Object], Iterable[Key]]:
    """Map an object to the keys of its owners of `owner_kind` (same namespace)."""

    def mapper(obj: Object) -> Iterable[Key]:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        return [Key(namespace, str(ref["name"])) for ref in meta.get("ownerReferences") or []
                if ref.get("kind") == owner_kind]

    return mapper


class Reader(Protocol):
    """Read access to an informer's cache: the objects of one kind as last seen by its watch."""

    def get(self, key: Key) -> Object | None: ...

    def list(self, namespace: str | None = None, label_selector: Mapping[str, str] | None = None) -> list[Object]: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock; tests inject a fake with the same two methods."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class ControllerSpec:
    """One controller for the manager to run: `reconciler` is called with keys of the primary kind
    (`api_version`, `kind`), enqueued by changes to the primary objects and by `watches`."""

    name: str
    api_version: str
    kind: str
    reconciler: Reconciler
    watches: Sequence[Watch] = ()
    workers: int = 2
    # controller-runtime's predicates on `For(...)`: a change to a primary object for which this is False
    # enqueues nothing (for a deletion it sees the last known object), nor does a change that a `Watch`
    # with `only_served` maps to a cached primary for which it is False. A prefilter that saves the
    # reconciles of objects the controller does not serve; the reconciler still checks for itself. Only
    # for what cannot turn from False to True without another change (which is seen again).
    predicate: Callable[[Object], bool] | None = None
