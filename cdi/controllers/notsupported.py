"""Nothing is accepted silently: objects this CDI stores but does not act on yet say so.

For each kind that is admitted and stored but has no controller yet (ObjectTransfer; the PVC check stays for
CDI populator kinds no controller serves; the CDI resource has its operator, `cdi.operator`), this controller
writes a condition with reason `NotSupported` (`cdi.contracts.conditions`) in the kind's own condition types
and records one Warning event, so that `cdi describe` and `cdi wait` tell the user at once instead of leaving
the object waiting forever.
`gap` and `plan` are pure; `NotSupportedReconciler` applies them.
The import and upload DataVolume controllers (`cdi.controllers.datavolume`) handle every other
DataVolume; when a kind's real controller arrives, its entry leaves `_CONDITIONS` and `gap`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cdi.api import DataVolume, ManifestError, parse_object
from cdi.api.meta import CDI_API_VERSION, CDI_GROUP
from cdi.cluster.errors import NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.kinds import lookup
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.conditions import NOT_SUPPORTED
from cdi.controllers.datavolume.claim import (
    CLONE_SOURCES,
    IMPORT_SOURCES,
    import_source_kind,
    stored_source_members,
    stored_source_ref_kind,
    upload_annotations,
)
from cdi.controllers.meta import find_condition, is_deleting, timestamp
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result

COMPONENT = "cdi-not-supported"
_POPULATOR_KINDS: tuple[str, ...] = ()  # import/upload: cdi.controllers.populators; clone: clone populator
_SUPPORTED_SOURCES = "an http, s3, gcs, registry, blank, upload, pvc or snapshot source"

# The condition types each kind reports, as upstream names them.
_CONDITIONS: dict[str, tuple[str, ...]] = {
    "DataVolume": ("Ready", "Bound", "Running"),
    "ObjectTransfer": ("Complete",),
}
KINDS = (*_CONDITIONS, "PersistentVolumeClaim")


@dataclass(frozen=True)
class Plan:
    """What to write: a status to merge (None: leave it) and the Warning event's message."""

    status: dict[str, Any] | None
    event: str


def datavolume_gap(dv: DataVolume) -> str | None:
    """What a DataVolume asks for that is not implemented; None when the import/upload controllers take it."""
    if import_source_kind(dv) is not None or upload_annotations(dv):
        return None
    members = dv.spec.source.members() if dv.spec.source is not None else set()
    if "pvc" in members or "snapshot" in members:
        return None  # the clone DataVolume controllers (cdi.controllers.clone.datavolume)
    if dv.spec.source_ref is not None and dv.spec.source_ref.kind == "DataSource":
        return None  # the clone DataVolume controllers resolve it
    if dv.spec.source_ref is not None:
        return f"A sourceRef of kind {dv.spec.source_ref.kind} (only DataSource exists)"
    return "A DataVolume without an import, upload or clone source"


def gap(kind: str, doc: Object) -> str | None:
    """What `doc` (of `kind`) asks for that this CDI does not do yet; None when it is acted on."""
    if kind == "DataVolume":
        try:
            dv = parse_object(doc)
        except ManifestError:
            return None  # admission refuses these; nothing stored should fail to parse
        return datavolume_gap(dv) if isinstance(dv, DataVolume) else None
    if kind == "PersistentVolumeClaim":
        spec = doc.get("spec") or {}
        ref = spec.get("dataSourceRef") or spec.get("dataSource") or {}
        if ref.get("kind") in _POPULATOR_KINDS and ref.get("apiGroup") == CDI_GROUP:
            return f"Populating a PersistentVolumeClaim from a {ref['kind']} (spec.dataSourceRef)"
        return None
    return {"ObjectTransfer": "ObjectTransfer"}.get(kind)


def may_lack_support(kind: str, doc: Object) -> bool:
    """The predicate: False only for what `gap` surely finds handled, without parsing a DataVolume."""
    if kind != "DataVolume":
        return gap(kind, doc) is not None
    handled = not stored_source_members(doc).isdisjoint((*IMPORT_SOURCES, "upload", *CLONE_SOURCES))
    return not handled and stored_source_ref_kind(doc) != "DataSource"


def message_for(kind: str, what: str) -> str:
    if kind == "DataVolume":
        return (f"{what} is not supported yet by this CDI: nothing will be written to the volume. "
                f"Use {_SUPPORTED_SOURCES}.")
    return f"{what} is not supported yet by this CDI: this {kind} is stored but nothing acts on it."


def plan(kind: str, doc: Object, now: str) -> Plan | None:
    """The status and event for an object nothing acts on; None when it needs neither (or is handled)."""
    what = gap(kind, doc)
    if what is None or is_deleting(doc):
        return None
    message = message_for(kind, what)
    types = _CONDITIONS.get(kind, ())
    status = dict(doc.get("status") or {})
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    changed = False
    for type_ in types:
        old = find_condition(conditions, type_)
        wanted = {"type": type_, "status": "False", "reason": NOT_SUPPORTED, "message": message}
        if old is not None and all(old.get(k) == v for k, v in wanted.items()):
            continue
        conditions = [c for c in conditions if c.get("type") != type_]
        conditions.append({**wanted, "lastTransitionTime": now, "lastHeartbeatTime": now})
        changed = True
    if kind == "DataVolume" and status.get("phase") != "Pending":
        status["phase"], changed = "Pending", True
    if not changed:
        return Plan(None, message) if not types else None
    status["conditions"] = conditions
    return Plan(status if types else None, message)


class NotSupportedReconciler:
    """Applies `plan` for one kind: merges the status, records the Warning event once per change."""

    def __init__(self, cluster: Cluster, clock: Clock, api_version: str, kind: str,
                 events: EventSink | None = None) -> None:
        self._cluster, self._clock = cluster, clock
        self._events = events or DirectEvents(cluster, clock.now)
        self._api_version, self._kind = api_version, kind

    async def reconcile(self, key: Key) -> Result:
        try:
            doc = await self._cluster.get(self._api_version, self._kind, key.name, key.namespace or None)
        except NotFound:
            return DONE
        todo = plan(self._kind, doc, timestamp(self._clock.now()))
        if todo is None:
            return DONE
        if todo.status is not None:
            # Upstream's DataSource and DataImportCron have no status subresource: their status is
            # written with the object.
            write = self._cluster.patch_status if lookup(self._api_version, self._kind).status_subresource \
                else self._cluster.patch
            doc = await write(self._api_version, self._kind, key.name, {"status": todo.status}, key.namespace or None)
        await self._events.record(doc, "Warning", NOT_SUPPORTED, todo.event, component=COMPONENT)
        return DONE


def controllers(cluster: Cluster, clock: Clock, events: EventSink | None = None) -> list[ControllerSpec]:
    specs = []
    for kind in KINDS:
        api_version = "v1" if kind == "PersistentVolumeClaim" else CDI_API_VERSION
        specs.append(ControllerSpec(f"not-supported-{kind.lower()}", api_version, kind,
                                    NotSupportedReconciler(cluster, clock, api_version, kind, events), workers=1,
                                    predicate=_predicate(kind)))
    return specs


def _predicate(kind: str) -> Callable[[Object], bool]:
    return lambda doc: may_lack_support(kind, doc)
