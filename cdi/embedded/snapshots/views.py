"""Typed views of VolumeSnapshots, VolumeSnapshotContents and VolumeSnapshotClasses, and the names
external-snapshotter writes on them: the edge where the snapshot controller parses raw objects.

`cdi.embedded.snapshots.plan` decides from these views only; `cdi.embedded.snapshots.controller`
builds them from what it reads. Finalizer and annotation keys are Kubernetes' (external-snapshotter's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cdi.cluster.protocol import Object

SNAPSHOT_API: Final = "snapshot.storage.k8s.io/v1"
VS: Final = (SNAPSHOT_API, "VolumeSnapshot")
VSC: Final = (SNAPSHOT_API, "VolumeSnapshotContent")
VS_CLASS: Final = (SNAPSHOT_API, "VolumeSnapshotClass")

# external-snapshotter's finalizers: the snapshot-controller's on a VolumeSnapshot, the sidecar's on a content.
FINALIZER_AS_SOURCE: Final = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
FINALIZER_BOUND: Final = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
FINALIZER_CONTENT: Final = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
FINALIZER_PVC: Final = "snapshot.storage.kubernetes.io/pvc-as-source-protection"  # on a claim being snapshotted
ANN_DEFAULT_SNAPSHOT_CLASS: Final = "snapshot.storage.kubernetes.io/is-default-class"
DELETE, RETAIN = "Delete", "Retain"


@dataclass(frozen=True)
class SnapshotClassView:
    name: str
    driver: str
    deletion_policy: str
    is_default: bool


@dataclass(frozen=True)
class ContentView:
    name: str
    driver: str
    deletion_policy: str
    class_name: str | None
    volume_handle: str | None  # spec.source.volumeHandle: a dynamic snapshot of that volume
    source_snapshot_handle: str | None  # spec.source.snapshotHandle: a pre-provisioned snapshot
    ref_name: str
    ref_namespace: str
    ref_uid: str
    source_volume_mode: str | None
    snapshot_handle: str | None  # status.snapshotHandle
    ready: bool
    restore_size: int | None
    creation_ns: int | None
    error: str | None
    finalizers: tuple[str, ...]
    deleting: bool

    @property
    def handle(self) -> str | None:
        """The snapshot in the pool this content stands for, once known."""
        return self.snapshot_handle or self.source_snapshot_handle


@dataclass(frozen=True)
class SnapshotView:
    namespace: str
    name: str
    uid: str
    pvc_name: str | None
    content_name: str | None  # spec.source.volumeSnapshotContentName (pre-provisioned)
    class_name: str | None
    finalizers: tuple[str, ...]
    deleting: bool
    bound_content: str | None  # status.boundVolumeSnapshotContentName
    status: Object  # the status as it is, to compare with the desired one


def parse_class(obj: Object) -> SnapshotClassView:
    meta = obj.get("metadata") or {}
    return SnapshotClassView(name=str(meta.get("name") or ""), driver=str(obj.get("driver") or ""),
                             deletion_policy=str(obj.get("deletionPolicy") or DELETE),
                             is_default=(meta.get("annotations") or {}).get(ANN_DEFAULT_SNAPSHOT_CLASS) == "true")


def parse_content(obj: Object) -> ContentView:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    source, ref = spec.get("source") or {}, spec.get("volumeSnapshotRef") or {}
    restore = status.get("restoreSize")
    return ContentView(
        name=str(meta.get("name") or ""), driver=str(spec.get("driver") or ""),
        deletion_policy=str(spec.get("deletionPolicy") or DELETE),
        class_name=spec.get("volumeSnapshotClassName") or None,
        volume_handle=source.get("volumeHandle") or None, source_snapshot_handle=source.get("snapshotHandle") or None,
        ref_name=str(ref.get("name") or ""), ref_namespace=str(ref.get("namespace") or ""),
        ref_uid=str(ref.get("uid") or ""), source_volume_mode=spec.get("sourceVolumeMode") or None,
        snapshot_handle=status.get("snapshotHandle") or None, ready=status.get("readyToUse") is True,
        restore_size=int(restore) if isinstance(restore, int) else None,
        creation_ns=int(status["creationTime"]) if isinstance(status.get("creationTime"), int) else None,
        error=(status.get("error") or {}).get("message") or None,
        finalizers=tuple(meta.get("finalizers") or ()), deleting=bool(meta.get("deletionTimestamp")))


def parse_snapshot(obj: Object) -> SnapshotView:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    source = spec.get("source") or {}
    return SnapshotView(
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
        pvc_name=source.get("persistentVolumeClaimName") or None,
        content_name=source.get("volumeSnapshotContentName") or None,
        class_name=spec.get("volumeSnapshotClassName") or None, finalizers=tuple(meta.get("finalizers") or ()),
        deleting=bool(meta.get("deletionTimestamp")),
        bound_content=status.get("boundVolumeSnapshotContentName") or None, status=dict(status))


def content_name_for(snapshot: SnapshotView) -> str:
    """The content of a dynamic snapshot, named as the snapshot-controller names it."""
    return f"snapcontent-{snapshot.uid}"
