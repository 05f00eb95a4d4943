"""What to do for one VolumeSnapshotContent of this driver: the csi-snapshotter sidecar's pure planner.

`plan_content` takes the snapshot of the volume named by `source.volumeHandle` (or finds the one
`source.snapshotHandle` names in the pool) and writes the content's status as the sidecar does (sizes in
bytes, time in nanoseconds); it keeps the content's finalizer, and on deletion frees the snapshot's
data when the policy is Delete before letting go. A content whose snapshot is gone is deleted with
policy Delete. Contents of other drivers are not ours. `cdi.embedded.snapshots.controller` observes and
applies; `cdi.embedded.snapshots.plan` is the VolumeSnapshot side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdi.cluster.protocol import Object
from cdi.embedded.snapshots.actions import (
    ContentAction,
    DeleteContent,
    DeleteSnapshotData,
    Event,
    Plan,
    SetStatus,
    TakeSnapshot,
    stamp,
    with_finalizers,
    without_finalizers,
)
from cdi.embedded.snapshots.views import DELETE, FINALIZER_CONTENT, ContentView
from cdi.embedded.volumes.pool import SnapshotInfo, VolumeInfo


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


def plan_content(observed: ContentObservation) -> Plan:
    content = observed.content
    if content.driver != observed.driver:
        return Plan()
    if content.deleting:
        if FINALIZER_CONTENT not in content.finalizers or observed.snapshot_bound:
            return Plan()
        free = (DeleteSnapshotData(content.handle),) if content.deletion_policy == DELETE and content.handle else ()
        drop = without_finalizers(content.finalizers, FINALIZER_CONTENT)
        return Plan((*free, *((drop,) if drop else ())))
    actions: list[ContentAction] = []
    finalizers = with_finalizers(content.finalizers, FINALIZER_CONTENT)
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
        actions.append(SetStatus({"readyToUse": False, "error": {"message": message, "time": stamp(observed.now)}}))
    return Plan(tuple(actions), requeue=True)
