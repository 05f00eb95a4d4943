"""In-memory bookkeeping the provisioner's controllers share: which claims wait on which class, and
which Events were already recorded.

`PendingClaims` answers the runtime's watch mappings: a StorageClass that appears or changes wakes the
unbound claims of that class (and, if it is a default class, the claims that name none); a
PersistentVolume wakes the claim its claimRef names, or, while unclaimed, the unbound claims of its
class that it might fit. The claim reconciler notes every claim it sees, so after start-up (when the
runtime reconciles every claim once) the index is complete.

`EventOnce` records an Event about an object the first time a reason and message occur, so a claim
that waits (for a consumer, a class, an external provisioner) says so once per process instead of
bumping the Event's count on every reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.keys import ANN_DEFAULT_STORAGE_CLASS, COMPONENT
from cdi.runtime.types import Key


class PendingClaims:
    """Unbound claims by the StorageClass they wait on (None: no class yet)."""

    def __init__(self) -> None:
        self._waiting: dict[Key, str | None] = {}

    def note(self, key: Key, storage_class: str | None, *, pending: bool) -> None:
        if pending:
            self._waiting[key] = storage_class
        else:
            self._waiting.pop(key, None)

    def forget(self, key: Key) -> None:
        self._waiting.pop(key, None)

    def waiting_on(self, storage_class: str | None) -> list[Key]:
        return sorted(key for key, waited in self._waiting.items() if waited == storage_class)

    def for_storage_class(self, obj: Object) -> list[Key]:
        """The claims a change to this StorageClass may unblock."""
        meta = obj.get("metadata") or {}
        keys = self.waiting_on(str(meta.get("name", "")))
        if (meta.get("annotations") or {}).get(ANN_DEFAULT_STORAGE_CLASS) == "true":
            keys += self.waiting_on(None)
        return keys

    def for_volume(self, obj: Object) -> list[Key]:
        """The claim a PersistentVolume names, or the unbound claims of its class while it is unclaimed."""
        spec = obj.get("spec") or {}
        ref = spec.get("claimRef")
        if ref:
            return [Key(str(ref.get("namespace") or ""), str(ref.get("name") or ""))]
        return self.waiting_on(str(spec.get("storageClassName") or ""))


class EventOnce:
    """Records each (object, type, reason, message) Event once per process."""

    def __init__(self, cluster: Cluster, clock: Callable[[], datetime], *, component: str = COMPONENT) -> None:
        self._cluster = cluster
        self._clock = clock
        self._component = component
        self._recorded: set[tuple[str, str, str, str, str, str, str]] = set()

    async def record(self, obj: Object, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        seen = (*_identity(str(obj.get("kind")), Key.of(obj)), str(meta.get("uid") or ""), type_, reason, message)
        if seen in self._recorded:
            return
        await record_event(self._cluster, obj, type_, reason, message, component=self._component, clock=self._clock)
        self._recorded.add(seen)

    def forget(self, kind: str, key: Key) -> None:
        """Drop what was recorded about an object that is gone."""
        identity = _identity(kind, key)
        self._recorded = {seen for seen in self._recorded if seen[:3] != identity}


def _identity(kind: str, key: Key) -> tuple[str, str, str]:
    return kind, key.namespace, key.name
