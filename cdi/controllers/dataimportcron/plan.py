"""Deciding what one reconcile of a DataImportCron does, pure: `plan(Observed) -> Plan`.

Follows upstream's `update()` step by step (reference §3.4): the current import's DataVolume, claim
or snapshot sets `Progressing`; a succeeded import becomes `lastImportedPVC` (and, in snapshot format,
a VolumeSnapshot of the claim, after which the claim goes); the managed DataSource follows
`lastImportedPVC` only, so it never points at an import that has not succeeded; old imports are
garbage-collected down to `importsToKeep`; a new `sourceDesiredDigest` sets `UpToDate` False `Outdated`
and, once no import is running, creates the import `<managedDataSource>-<12 digest chars>` (or adopts
a claim or snapshot already so named). The poll itself happened before (`PollOutcome`, `observed`); this module
turns its result into `lastCronTime`, `sourceDesiredDigest` and `nextCronTime`. The old-import
selection is in `cdi.controllers.dataimportcron.collect`; `controller` applies the plan.

Deliberate differences: the current and the last good import are never garbage-collected (upstream
deletes them when `importsToKeep` is 0, and then imports the same digest again); `lastUseTime` is
refreshed when an import succeeds or is adopted, not on every reconcile.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdi.api.dataimportcron import DEFAULT_IMPORTS_TO_KEEP
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron import status as st
from cdi.controllers.dataimportcron.actions import Action, Create, Delete, Event, Patch, resource_labels
from cdi.controllers.dataimportcron.classchange import class_change
from cdi.controllers.dataimportcron.collect import garbage
from cdi.controllers.dataimportcron.naming import DigestError, import_name
from cdi.controllers.dataimportcron.observed import Observed
from cdi.controllers.dataimportcron.render import data_source_plan, import_data_volume, snapshot_of
from cdi.controllers.dataimportcron.schedule import next_fire, parse_time, rfc3339, rfc3339_nano
from cdi.controllers.meta import annotations_of, name_of, namespace_of, timestamp

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
POLL_RETRY = timedelta(seconds=30)
SNAPSHOT_RECHECK = 2.0  # seconds: snapshots are polled while not ready (a cluster may not serve their kind)
# A stuck import is replaced when a newer digest arrives. Upstream deletes one whose Running condition is
# False with reason Error (its generic reason for a failed importer) or ImagePullFailed; our importer
# names its failures (InvalidImage, ImportSourceUnavailable, ...), so every reason but these waiting ones
# counts, and so does a Failed DataVolume.
NOT_FAILURES = ("", "Pending", "Completed", "ContainerCreating", "PodInitializing")
# A poll that failed for good keeps saying why until the next poll, instead of a bare "No source digest".
FINAL_POLL_REASONS = ("NotSupported", "NoChangeValidator")


@dataclass(frozen=True)
class Plan:
    annotations: dict[str, str]  # changes to the cron's annotations
    status: dict[str, Any]  # the cron's whole desired status
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


@dataclass
class _Work:
    o: Observed
    status: dict[str, Any]
    imports: list[dict[str, str]]
    annotations: dict[str, str] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)

    def condition(self, update: st.ConditionUpdate) -> None:
        conditions = st.apply_condition(self.status.get("conditions") or [], update, timestamp(self.o.now))
        self.status["conditions"] = conditions

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))


def poll_due(doc: Object, now: datetime) -> bool:
    """Whether the source is polled in this reconcile: a schedule, and `nextCronTime` unset or reached."""
    if not (doc.get("spec") or {}).get("schedule"):
        return False
    due = parse_time(annotations_of(doc).get(ann.ANN_NEXT_CRON_TIME))
    return due is None or due <= now


def plan(o: Observed) -> Plan:
    work = _Work(o, copy.deepcopy(o.doc.get("status") or {}),
                 [dict(i) for i in (o.doc.get("status") or {}).get("currentImports") or []])
    change = class_change(o)
    if change.actions:
        return Plan(work.annotations, work.status, change.actions, change.events, requeue_after=1.0)
    if change.record:
        work.annotations[ann.ANN_STORAGE_CLASS] = change.record
    if o.snapshot is not None and o.dv is None and o.source_format == "pvc" and \
            not (o.pvc is not None and _phase(o.pvc) == "Bound"):
        # Format switched back to pvc: the snapshot goes, and the digest is imported again as a claim.
        return Plan(work.annotations, work.status, (Delete(SNAPSHOT_API, "VolumeSnapshot", name_of(o.snapshot)),),
                    requeue_after=1.0)
    succeeded = _current_import(work)
    if succeeded:
        _on_success(work)
    work.actions += data_source_plan(o, work.status, work.events)
    _schedule(work)
    _digest(work, succeeded)
    last = work.annotations.get(ann.ANN_LAST_CRON_TIME) or annotations_of(o.doc).get(ann.ANN_LAST_CRON_TIME)
    if last:
        work.status["lastExecutionTimestamp"] = last
    work.status["currentImports"] = work.imports
    return Plan(work.annotations, work.status, tuple(work.actions), tuple(work.events),
                min(work.requeue) if work.requeue else None)


def _phase(obj: Object) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def _snapshot_ready(snapshot: Object) -> bool:
    return (snapshot.get("status") or {}).get("readyToUse") is True


def _current_import(work: _Work) -> bool:
    """Sets Progressing from the current import; True when it has succeeded."""
    o = work.o
    if o.dv is not None:
        phase = _phase(o.dv)
        if phase == "Succeeded":
            return _populated(work)
        if phase == "ImportScheduled":
            work.condition(st.progressing(False, "Import is scheduled", st.SCHEDULED))
        elif phase == "ImportInProgress":
            work.condition(st.progressing(True, "Import is progressing", st.IN_PROGRESS))
        else:
            work.condition(st.progressing(False, f"Import DataVolume phase {phase}", phase or "Pending"))
        return False
    if o.pvc is not None and _phase(o.pvc) == "Bound":
        return _populated(work)
    if o.snapshot is not None:
        _touch_if_new(work, o.snapshot, "VolumeSnapshot")
        return True
    if work.imports:
        work.imports = work.imports[1:]
    work.condition(st.progressing(False, "No current import", st.NO_IMPORT))
    return False


def _touch_if_new(work: _Work, obj: Object, kind: str) -> None:
    """A source that just became the good import is labelled for the cron and its lastUseTime refreshed."""
    last = (work.status.get("lastImportedPVC") or {}).get("name")
    labels = resource_labels(work.o.doc)
    current = (obj.get("metadata") or {}).get("labels") or {}
    if last == name_of(obj) and all(current.get(k) == v for k, v in labels.items()):
        return
    api = "v1" if kind == "PersistentVolumeClaim" else SNAPSHOT_API
    work.actions.append(Patch(api, kind, name_of(obj), {"metadata": {
        "labels": labels, "annotations": {ann.ANN_LAST_USE_TIME: rfc3339_nano(work.o.now)}}}))


def _populated(work: _Work) -> bool:
    o = work.o
    if o.pvc is not None:
        _touch_if_new(work, o.pvc, "PersistentVolumeClaim")
        if o.source_format == "snapshot":
            _snapshot_format(work, o.pvc)
    return True


def _snapshot_format(work: _Work, pvc: Object) -> None:
    o = work.o
    if (pvc.get("spec") or {}).get("storageClassName") not in (None, o.storage_class):
        return  # upstream: never snapshot a claim of a class that is no longer the desired one
    if o.snapshot is None:
        work.actions.append(Create(snapshot_of(o, pvc)))
        work.event("Normal", "SnapshotCreated", f"Creating VolumeSnapshot {name_of(pvc)} of the imported claim")
        work.requeue.append(SNAPSHOT_RECHECK)
    elif _snapshot_ready(o.snapshot):
        work.actions.append(Delete("cdi.kubevirt.io/v1beta1", "DataVolume", name_of(pvc), or_claim=True))
    else:
        work.requeue.append(SNAPSHOT_RECHECK)


def _on_success(work: _Work) -> None:
    o = work.o
    name = work.imports[0]["DataVolumeName"] if work.imports else name_of(o.snapshot or o.pvc or o.dv or {})
    source = {"namespace": namespace_of(o.doc), "name": name}
    if work.status.get("lastImportedPVC") != source:
        work.status["lastImportedPVC"] = source
        work.status["lastImportTimestamp"] = timestamp(o.now)
        digest = work.imports[0]["Digest"] if work.imports else ""
        work.event("Normal", "ImportSucceeded", f"Import {name} of digest {digest} succeeded")
    work.condition(st.progressing(False, "No current import", st.NO_IMPORT))
    spec = o.doc.get("spec") or {}
    if spec.get("garbageCollect", "Outdated") == "Outdated":
        keep = spec.get("importsToKeep")
        keep = DEFAULT_IMPORTS_TO_KEEP if keep is None or keep < 0 else int(keep)
        protected = {name, *(i["DataVolumeName"] for i in work.imports)}
        actions, events = garbage(o.import_pvcs, o.import_snapshots, keep, protected)
        work.actions += actions
        work.events += events


def _schedule(work: _Work) -> None:
    """The poll's result into annotations, and when to wake for the next poll."""
    o = work.o
    schedule = str((o.doc.get("spec") or {}).get("schedule") or "")
    if not schedule:
        return
    poll, desired = o.poll, annotations_of(o.doc).get(ann.ANN_SOURCE_DESIRED_DIGEST)
    if poll is None:
        due = parse_time(annotations_of(o.doc).get(ann.ANN_NEXT_CRON_TIME)) or o.now
        work.requeue.append(max(0.0, (due - o.now).total_seconds()) + 1.0)
        return
    next_time = next_fire(schedule, o.now, o.zone)
    if poll.digest is not None:
        work.annotations[ann.ANN_LAST_CRON_TIME] = rfc3339(o.now)
        if poll.digest != desired:
            work.annotations[ann.ANN_SOURCE_DESIRED_DIGEST] = poll.digest
            work.event("Normal", "DigestUpdated", f"Source digest is now {poll.digest}")
    else:
        work.event("Warning", poll.reason, f"Polling the source failed: {poll.message}")
        if poll.retryable:
            next_time = min(next_time, o.now + POLL_RETRY)
    work.annotations[ann.ANN_NEXT_CRON_TIME] = rfc3339(next_time)
    work.requeue.append(max(0.0, (next_time - o.now).total_seconds()) + 1.0)


def _digest(work: _Work, succeeded: bool) -> None:
    o = work.o
    desired = work.annotations.get(ann.ANN_SOURCE_DESIRED_DIGEST) or \
        annotations_of(o.doc).get(ann.ANN_SOURCE_DESIRED_DIGEST) or ""
    if desired and (not work.imports or desired != work.imports[0]["Digest"]):
        work.condition(st.up_to_date(False, "Source digest updated since last import", st.OUTDATED))
        if o.dv is not None and _erroneous(o.dv):
            work.actions.append(Delete("cdi.kubevirt.io/v1beta1", "DataVolume", name_of(o.dv), unlabel=True))
            work.event("Warning", "ImportFailed", f"Deleted failed import {name_of(o.dv)}: a newer digest is available")
            work.imports = []
        if succeeded or not work.imports:
            _new_import(work, desired)
    elif succeeded:
        work.status["sourceFormat"] = o.source_format
        if o.source_format == "pvc" or (o.snapshot is not None and _snapshot_ready(o.snapshot)):
            work.condition(st.up_to_date(True, "Latest import is up to date", st.UPDATED))
        elif o.snapshot is not None:
            work.condition(st.up_to_date(False, "Snapshot of imported data is progressing", st.IN_PROGRESS))
            work.requeue.append(SNAPSHOT_RECHECK)
    elif work.imports:
        work.condition(st.up_to_date(False, "Import is progressing", st.IN_PROGRESS))
    elif o.poll is not None and not o.poll.retryable:
        work.condition(st.up_to_date(False, o.poll.message, o.poll.reason))  # e.g. NotSupported: pullMethod node
    elif (st.condition_of(work.status, st.UP_TO_DATE) or {}).get("reason") not in FINAL_POLL_REASONS:
        work.condition(st.up_to_date(False, "No source digest", st.NO_DIGEST))


def _erroneous(dv: Object) -> bool:
    conditions: list[dict[str, Any]] = (dv.get("status") or {}).get("conditions") or []
    running = next((c for c in conditions if c.get("type") == "Running"), {})
    if _phase(dv) in ("Succeeded", "Failed"):
        return _phase(dv) == "Failed"
    return running.get("status") == "False" and running.get("reason") not in NOT_FAILURES


def _new_import(work: _Work, digest: str) -> None:
    o = work.o
    try:
        name = import_name(str(o.doc["spec"]["managedDataSource"]), digest)
    except DigestError as e:
        work.event("Warning", e.reason, str(e))
        return
    work.imports = [{"DataVolumeName": name, "Digest": digest}]
    if o.adoptable is not None and name_of(o.adoptable) == name:
        _touch_if_new(work, o.adoptable, str(o.adoptable.get("kind") or "PersistentVolumeClaim"))
        return
    work.actions.append(Create(import_data_volume(o.doc, name, digest, o.now)))
    work.event("Normal", "ImportCreated", f"Created DataVolume {name} to import digest {digest}")
