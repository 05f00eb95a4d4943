"""What to do for one VolumeSnapshot and for one VolumeSnapshotContent: the snapshot controller's pure
planners, following external-snapshotter (snapshot-controller + the csi-snapshotter sidecar).

`plan_snapshot` (keyed by VolumeSnapshot): a dynamic snapshot (`source.persistentVolumeClaimName`)
of a bound claim whose volume is of this driver gets its class (the named one, or the driver's
default, written into the spec as snapshot-controller does) and a content `snapcontent-<uid>` naming
it; a pre-provisioned one (`source.volumeSnapshotContentName`) binds to the content it names if that
content names it back. Either way its status mirrors the content's, and it carries the
as-source and bound finalizers; its claim carries `pvc-as-source-protection` while the snapshot is
being taken, so it cannot go away in between. Snapshots of other drivers are left to them, with an
Event saying so; problems are a status error plus a Warning. A deleted snapshot keeps its as-source finalizer while
a claim is being restored from it, deletes its content when the policy is Delete, then lets go.

`plan_content` (keyed by VolumeSnapshotContent, only this driver's): take the snapshot of the volume
named by `source.volumeHandle` (or find the one `source.snapshotHandle` names) and write the content's
status; on deletion free the snapshot's data when the policy is Delete, then drop the finalizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cdi.cluster.protocol import Object
from cdi.embedded.snapshots.views import (
    DELETE,
    FINALIZER_AS_SOURCE,
    FINALIZER_BOUND,
    FINALIZER_CONTENT,
    ContentView,
    SnapshotClassView,
    SnapshotView,
    content_name_for,
)
from cdi.embedded.volumes.pool import SnapshotInfo, VolumeInfo
from cdi.quantity import format_quantity


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class SetFinalizers:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def applied_to(self, finalizers: list[str]) -> list[str]:
        """The list once this change is made to `finalizers` (as the object is when it is written)."""
        kept = [name for name in finalizers if name not in self.remove]
        return kept + [name for name in self.add if name not in kept]


@dataclass(frozen=True)
class SetClassName:
    name: str


@dataclass(frozen=True)
class CreateContent:
    name: str
    driver: str
    deletion_policy: str
    class_name: str
    volume_handle: str
    volume_mode: str


@dataclass(frozen=True)
class BindContent:
    name: str  # the pre-provisioned content whose volumeSnapshotRef gets this snapshot's uid


@dataclass(frozen=True)
class DeleteContent:
    name: str


@dataclass(frozen=True)
class ProtectClaim:
    add: bool  # add (True) or remove (False) the pvc-as-source-protection finalizer of the source claim


@dataclass(frozen=True)
class SetStatus:
    status: Object  # the whole desired status (merge-patched)


@dataclass(frozen=True)
class TakeSnapshot:
    volume: VolumeInfo
    handle: str
    in_use: bool


@dataclass(frozen=True)
class DeleteSnapshotData:
    handle: str


SnapshotAction = (Event | SetFinalizers | SetClassName | CreateContent | BindContent | DeleteContent | SetStatus
                  | ProtectClaim)
ContentAction = Event | SetFinalizers | SetStatus | TakeSnapshot | DeleteSnapshotData | DeleteContent


@dataclass(frozen=True)
class ClaimSource:
    """The claim a dynamic snapshot is of, with its volume."""

    bound: bool
    driver: str = ""
    volume_handle: str = ""
    volume_mode: str = "Filesystem"
    protected: bool = False  # carries FINALIZER_PVC
    deleting: bool = False


@dataclass(frozen=True)
class SnapshotObservation:
    snapshot: SnapshotView
    driver: str  # this controller's CSI driver
    now: datetime
    classes: tuple[SnapshotClassView, ...] = ()
    claim: ClaimSource | None = None  # None: the claim does not exist
    content: ContentView | None = None  # the content it is (or will be) bound to
    restoring: bool = False  # an unbound claim in the namespace has this snapshot as its data source
    siblings_in_flight: bool = False  # another snapshot of the same claim is still being taken


@dataclass(frozen=True)
class Plan:
    actions: tuple[SnapshotAction | ContentAction, ...] = ()
    requeue: bool = False  # waiting for something no watch reports (a claim to bind)


@dataclass(frozen=True)
class ContentObservation:
    content: ContentView
    driver: str
    now: datetime
    snapshot_bound: bool = False  # the VolumeSnapshot it names exists, is not being deleted, and has its uid
    snapshot_gone: bool = False  # no VolumeSnapshot of that name and uid exists
    volume: VolumeInfo | None = None  # the volume `source.volumeHandle` names, when this pool holds it
    in_use: bool = False
    pool_snapshot: SnapshotInfo | None = None  # the snapshot `handle` names, when the pool has it


def rfc3339(nanoseconds: int) -> str:
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with(finalizers: tuple[str, ...], *wanted: str) -> SetFinalizers | None:
    missing = tuple(name for name in wanted if name not in finalizers)
    return SetFinalizers(add=missing) if missing else None


def _without(finalizers: tuple[str, ...], *unwanted: str) -> SetFinalizers | None:
    present = tuple(name for name in unwanted if name in finalizers)
    return SetFinalizers(remove=present) if present else None


def _error_status(observed: SnapshotObservation, message: str) -> SetStatus | None:
    status = dict(observed.snapshot.status)
    old = status.get("error") or {}
    if old.get("message") == message and status.get("readyToUse") is False:
        return None
    status.update(readyToUse=False, error={"message": message, "time": _stamp(observed.now)})
    return SetStatus(status)


def _fail(observed: SnapshotObservation, reason: str, message: str, *, requeue: bool = False) -> Plan:
    actions: list[SnapshotAction] = [Event("Warning", reason, message)]
    status = _error_status(observed, message)
    if status is not None:
        actions.append(status)
    return Plan(tuple(actions), requeue)


def plan_snapshot(observed: SnapshotObservation) -> Plan:
    snapshot = observed.snapshot
    if snapshot.deleting:
        return _deleting(observed)
    if snapshot.content_name:
        return _pre_provisioned(observed)
    return _dynamic(observed)


def _deleting(observed: SnapshotObservation) -> Plan:
    snapshot, content = observed.snapshot, observed.content
    if not {FINALIZER_AS_SOURCE, FINALIZER_BOUND} & set(snapshot.finalizers):
        return Plan()
    if observed.restoring and FINALIZER_AS_SOURCE in snapshot.finalizers:
        return Plan((Event("Normal", "SnapshotDeletePending", "Snapshot is being used to restore a PVC"),),
                    requeue=True)
    actions: list[SnapshotAction] = []
    if content is not None and content.ref_uid == snapshot.uid and content.deletion_policy == DELETE \
            and not content.deleting:
        actions.append(DeleteContent(content.name))
    actions.extend(_release_claim(observed))
    drop = _without(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    return Plan((*actions, *((drop,) if drop else ())))


def _release_claim(observed: SnapshotObservation) -> list[SnapshotAction]:
    claim = observed.claim
    if claim is None or not claim.protected or observed.siblings_in_flight:
        return []
    return [ProtectClaim(add=False)]


def _dynamic(observed: SnapshotObservation) -> Plan:
    snapshot, claim = observed.snapshot, observed.claim
    if claim is None:
        return _fail(observed, "SnapshotCreationFailed", f'failed to get input parameters to create snapshot '
                                                         f'{snapshot.name}: persistentvolumeclaim '
                                                         f'"{snapshot.pvc_name}" not found', requeue=True)
    if not claim.bound:
        return _fail(observed, "SnapshotCreationFailed", f"the PVC {snapshot.pvc_name} is not yet bound to a PV, "
                                                         f"will not attempt to take a snapshot", requeue=True)
    if claim.driver != observed.driver:
        return Plan((Event("Normal", "SnapshotNotHandled", f'the volume of PVC {snapshot.pvc_name} is not of CSI '
                                                           f'driver "{observed.driver}"; its own driver\'s '
                                                           f"snapshotter takes the snapshot"),))
    chosen = _snapshot_class(observed, claim.driver)
    if isinstance(chosen, Plan):
        return chosen
    content = observed.content
    taken = content is not None and content.ready
    if claim.deleting and not taken:
        return _fail(observed, "SnapshotCreationFailed", f"cannot create snapshot of PVC {snapshot.pvc_name}: it is "
                                                         f"being deleted", requeue=True)
    actions: list[SnapshotAction] = []
    if not taken and not claim.protected:
        actions.append(ProtectClaim(add=True))
    if taken:
        actions.extend(_release_claim(observed))
    if not snapshot.class_name:
        actions.append(SetClassName(chosen.name))
    if content is None:
        name = content_name_for(snapshot)
        actions += [CreateContent(name, chosen.driver, chosen.deletion_policy, chosen.name, claim.volume_handle,
                                  claim.volume_mode),
                    Event("Normal", "CreatingSnapshot", f"Waiting for a snapshot {snapshot.namespace}/{snapshot.name} "
                                                        f"to be created by the CSI driver.")]
    finalizers = _with(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    if finalizers:
        actions.append(finalizers)
    if content is not None:
        actions.extend(_mirror(observed, content))
    return Plan(tuple(actions))


def _snapshot_class(observed: SnapshotObservation, driver: str) -> SnapshotClassView | Plan:
    """The class of a dynamic snapshot, or the plan that says why there is none (or that it is not ours)."""
    name = observed.snapshot.class_name
    if name:
        found = next((cls for cls in observed.classes if cls.name == name), None)
        if found is None:
            return _fail(observed, "GetSnapshotClassFailed", f'Failed to get snapshot class with error '
                                                             f'volumesnapshotclass.snapshot.storage.k8s.io "{name}" '
                                                             f"not found", requeue=True)
        if found.driver != observed.driver:
            return Plan((Event("Normal", "SnapshotNotHandled", f'VolumeSnapshotClass "{name}" is of driver '
                                                               f'"{found.driver}", not "{observed.driver}"'),))
        return found
    defaults = [cls for cls in observed.classes if cls.is_default and cls.driver == driver]
    if len(defaults) != 1:
        problem = "cannot find default snapshot class" if not defaults else \
            f"{len(defaults)} default snapshot classes were found"
        return _fail(observed, "SnapshotCreationFailed", f"Failed to get snapshot class with error {problem} for "
                                                         f'driver "{driver}"', requeue=True)
    return defaults[0]


def _pre_provisioned(observed: SnapshotObservation) -> Plan:
    snapshot, content = observed.snapshot, observed.content
    if content is None:
        return _fail(observed, "SnapshotContentMissing", f"VolumeSnapshotContent {snapshot.content_name} is missing",
                     requeue=True)
    if content.driver != observed.driver:
        return Plan((Event("Normal", "SnapshotNotHandled", f'VolumeSnapshotContent {content.name} is of driver '
                                                           f'"{content.driver}", not "{observed.driver}"'),))
    if (content.ref_name, content.ref_namespace) != (snapshot.name, snapshot.namespace) \
            or content.ref_uid not in ("", snapshot.uid):
        return _fail(observed, "SnapshotBindFailed", f"VolumeSnapshotContent {content.name} is bound to another "
                                                     f"VolumeSnapshot ({content.ref_namespace}/{content.ref_name})")
    actions: list[SnapshotAction] = []
    if not content.ref_uid:
        actions.append(BindContent(content.name))
    finalizers = _with(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    if finalizers:
        actions.append(finalizers)
    return Plan((*actions, *_mirror(observed, content)))


def _mirror(observed: SnapshotObservation, content: ContentView) -> list[SnapshotAction]:
    """The snapshot's status as its content's, if it is not already."""
    current = observed.snapshot.status
    desired: Object = {"boundVolumeSnapshotContentName": content.name, "readyToUse": content.ready}
    if content.restore_size is not None:
        desired["restoreSize"] = format_quantity(content.restore_size)
    if content.creation_ns is not None:
        desired["creationTime"] = rfc3339(content.creation_ns)
    if content.error:
        old = current.get("error") or {}
        desired["error"] = old if old.get("message") == content.error else \
            {"message": content.error, "time": _stamp(observed.now)}
    if all(current.get(key) == value for key, value in desired.items()) and \
            ("error" in desired or not current.get("error")):
        return []
    return [SetStatus({**desired, "error": desired.get("error")})]


def plan_content(observed: ContentObservation) -> Plan:
    content = observed.content
    if content.driver != observed.driver:
        return Plan()
    if content.deleting:
        if FINALIZER_CONTENT not in content.finalizers or observed.snapshot_bound:
            return Plan()
        free = (DeleteSnapshotData(content.handle),) if content.deletion_policy == DELETE and content.handle else ()
        drop = _without(content.finalizers, FINALIZER_CONTENT)
        return Plan((*free, *((drop,) if drop else ())))
    actions: list[ContentAction] = []
    finalizers = _with(content.finalizers, FINALIZER_CONTENT)
    if finalizers:
        actions.append(finalizers)
    if observed.snapshot_gone and content.ref_uid and content.deletion_policy == DELETE:
        return Plan((*actions, DeleteContent(content.name)))
    if content.ready and content.snapshot_handle:
        return Plan(tuple(actions))
    if content.volume_handle:
        if observed.volume is None:
            return _content_error(observed, actions, f"volume {content.volume_handle} is not in the storage pool "
                                                     f"of CSI driver {observed.driver} on this node")
        actions.append(TakeSnapshot(observed.volume, content.name, observed.in_use))
        return Plan(tuple(actions))
    found = observed.pool_snapshot
    if found is None:
        return _content_error(observed, actions, f"snapshot {content.source_snapshot_handle} does not exist in the "
                                                 f"storage pool of CSI driver {observed.driver} on this node")
    actions.append(SetStatus(content_status(found)))
    return Plan(tuple(actions))


def content_status(snapshot: SnapshotInfo) -> Object:
    """A ready content's status, as the csi-snapshotter sidecar writes it (sizes in bytes, time in ns)."""
    return {"snapshotHandle": snapshot.handle, "readyToUse": True, "restoreSize": snapshot.size_bytes,
            "creationTime": snapshot.created_ns, "error": None}


def _content_error(observed: ContentObservation, actions: list[ContentAction], message: str) -> Plan:
    actions.append(Event("Warning", "SnapshotCreationFailed", message))
    if observed.content.error != message:
        actions.append(SetStatus({"readyToUse": False, "error": {"message": message, "time": _stamp(observed.now)}}))
    return Plan(tuple(actions), requeue=True)
