"""What to do for one VolumeSnapshot: the pure planner of the snapshot controller's snapshot-controller
half, following external-snapshotter.

`plan_snapshot` (keyed by VolumeSnapshot): a dynamic snapshot (`source.persistentVolumeClaimName`)
of a bound claim whose volume is of this driver gets its class (the named one, or the driver's
default, written into the spec as snapshot-controller does) and a content `snapcontent-<uid>` naming
it; a pre-provisioned one (`source.volumeSnapshotContentName`) binds to the content it names if that
content names it back. Either way its status mirrors the content's, and it carries the
as-source and bound finalizers; its claim carries `pvc-as-source-protection` while the snapshot is
being taken, so it cannot go away in between. Snapshots of other drivers are left to them, with an
Event saying so; problems are a status error plus a Warning. A deleted snapshot keeps its as-source
finalizer while a claim is being restored from it, deletes its content when the policy is Delete, then
lets go.

The content side is `cdi.embedded.snapshots.content_plan`; the actions both use are in
`cdi.embedded.snapshots.actions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdi.cluster.protocol import Object
from cdi.embedded.snapshots.actions import (
    BindContent,
    CreateContent,
    DeleteContent,
    Event,
    Plan,
    ProtectClaim,
    SetClassName,
    SetStatus,
    SnapshotAction,
    rfc3339,
    stamp,
    with_finalizers,
    without_finalizers,
)
from cdi.embedded.snapshots.views import (
    DELETE,
    FINALIZER_AS_SOURCE,
    FINALIZER_BOUND,
    ContentView,
    SnapshotClassView,
    SnapshotView,
    content_name_for,
)
from cdi.quantity import format_quantity


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


def _error_status(observed: SnapshotObservation, message: str) -> SetStatus | None:
    status = dict(observed.snapshot.status)
    old = status.get("error") or {}
    if old.get("message") == message and status.get("readyToUse") is False:
        return None
    status.update(readyToUse=False, error={"message": message, "time": stamp(observed.now)})
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
    drop = without_finalizers(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    return Plan((*actions, *((drop,) if drop else ())))


def _release_claim(observed: SnapshotObservation) -> list[SnapshotAction]:
    claim = observed.claim
    if claim is None or not claim.protected or observed.siblings_in_flight:
        return []
    return [ProtectClaim(add=False)]


def _dynamic(observed: SnapshotObservation) -> Plan:
    snapshot, claim = observed.snapshot, observed.claim
    if observed.content is not None and observed.content.ready:
        return _taken(observed, observed.content)
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
    finalizers = with_finalizers(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    if finalizers:
        actions.append(finalizers)
    if content is not None:
        actions.extend(_mirror(observed, content))
    return Plan(tuple(actions))


def _taken(observed: SnapshotObservation, content: ContentView) -> Plan:
    """A snapshot whose content is taken no longer depends on its source claim, which may be gone (as
    external-snapshotter, a bound, ready snapshot is not re-validated against its source)."""
    actions: list[SnapshotAction] = list(_release_claim(observed))
    finalizers = with_finalizers(observed.snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
    if finalizers:
        actions.append(finalizers)
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
    finalizers = with_finalizers(snapshot.finalizers, FINALIZER_AS_SOURCE, FINALIZER_BOUND)
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
            {"message": content.error, "time": stamp(observed.now)}
    if all(current.get(key) == value for key, value in desired.items()) and \
            ("error" in desired or not current.get("error")):
        return []
    return [SetStatus({**desired, "error": desired.get("error")})]
