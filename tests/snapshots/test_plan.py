"""The snapshot planners and the provisioner's copy decision as tables of observed state → plan (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdi.api.core import VolumeMode
from cdi.embedded.snapshots.actions import (
    DeleteContent,
    DeleteSnapshotData,
    Event,
    ProtectClaim,
    SetFinalizers,
    SetStatus,
    TakeSnapshot,
)
from cdi.embedded.snapshots.content_plan import ContentObservation, plan_content
from cdi.embedded.snapshots.plan import ClaimSource, SnapshotObservation, plan_snapshot
from cdi.embedded.snapshots.views import (
    FINALIZER_AS_SOURCE,
    FINALIZER_BOUND,
    FINALIZER_CONTENT,
    SnapshotClassView,
    parse_content,
    parse_snapshot,
)
from cdi.embedded.volumes.pool import VolumeInfo
from cdi.embedded.volumes.source_plan import CopyFrom, CopySource, DataSourceRef, Refuse, plan_copy

DRIVER = "local.csi.pycdi.io"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULT = SnapshotClassView("local-snapshots", DRIVER, "Delete", True)
VOLUME = VolumeInfo("pvc-1", VolumeMode.FILESYSTEM, 64 << 20, "/p/mounts/pvc-1", "/p/images/pvc-1.img", "loop")


def vs(*, deleting: bool = False, finalizers: tuple[str, ...] = (), **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "snap", "namespace": "ns", "uid": "u1", "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {"metadata": meta, "spec": {"source": {"persistentVolumeClaimName": "data"}, **spec}}


def vsc(*, deleting: bool = False, policy: str = "Delete", status: dict[str, Any] | None = None,
        finalizers: tuple[str, ...] = (FINALIZER_CONTENT,)) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "snapcontent-u1", "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {"metadata": meta, "status": status or {},
            "spec": {"driver": DRIVER, "deletionPolicy": policy, "source": {"volumeHandle": "pvc-1"},
                     "volumeSnapshotRef": {"name": "snap", "namespace": "ns", "uid": "u1"}}}


def observe(snapshot: dict[str, Any], **kwargs: Any) -> SnapshotObservation:
    return SnapshotObservation(parse_snapshot(snapshot), DRIVER, NOW, **kwargs)


def test_a_dynamic_snapshot_gets_the_default_class_a_content_and_finalizers() -> None:
    plan = plan_snapshot(observe(vs(), classes=(DEFAULT,), claim=ClaimSource(True, DRIVER, "pvc-1", "Block")))
    kinds = [type(action).__name__ for action in plan.actions]
    assert kinds == ["ProtectClaim", "SetClassName", "CreateContent", "Event", "SetFinalizers"]
    assert plan.actions[0] == ProtectClaim(add=True)
    assert plan.actions[4] == SetFinalizers(add=(FINALIZER_AS_SOURCE, FINALIZER_BOUND))


def test_the_claim_is_protected_only_while_a_snapshot_of_it_is_taken() -> None:
    ready = parse_content(vsc(status={"readyToUse": True, "restoreSize": 1, "snapshotHandle": "h", "creationTime": 1}))
    named = vs(volumeSnapshotClassName="local-snapshots", finalizers=(FINALIZER_AS_SOURCE, FINALIZER_BOUND))
    protected = ClaimSource(True, DRIVER, "pvc-1", protected=True)
    done = plan_snapshot(observe(named, classes=(DEFAULT,), claim=protected, content=ready))
    assert ProtectClaim(add=False) in done.actions
    other_pending = plan_snapshot(observe(named, classes=(DEFAULT,), claim=protected, content=ready,
                                          siblings_in_flight=True))
    assert not any(isinstance(action, ProtectClaim) for action in other_pending.actions)
    going = plan_snapshot(observe(named, classes=(DEFAULT,), claim=ClaimSource(True, DRIVER, "pvc-1", deleting=True)))
    assert going.actions[0] == Event("Warning", "SnapshotCreationFailed",
                                     "cannot create snapshot of PVC data: it is being deleted")


def test_two_default_classes_are_an_error_on_the_snapshot() -> None:
    twice = (DEFAULT, SnapshotClassView("other-default", DRIVER, "Retain", True))
    plan = plan_snapshot(observe(vs(), classes=twice, claim=ClaimSource(True, DRIVER, "pvc-1")))
    message = f'Failed to get snapshot class with error 2 default snapshot classes were found for driver "{DRIVER}"'
    assert plan.actions[0] == Event("Warning", "SnapshotCreationFailed", message)
    assert plan.actions[1] == SetStatus({"readyToUse": False, "error": {"message": message,
                                                                        "time": "2026-12-01T12:00:00Z"}})
    assert plan.requeue


def test_a_ready_content_is_mirrored_on_the_snapshot() -> None:
    content = parse_content(vsc(status={"readyToUse": True, "restoreSize": 64 << 20, "snapshotHandle": "h",
                                        "creationTime": 1_764_590_400_000_000_000}))
    plan = plan_snapshot(observe(vs(volumeSnapshotClassName="local-snapshots",
                                    finalizers=(FINALIZER_AS_SOURCE, FINALIZER_BOUND)),
                                 classes=(DEFAULT,), claim=ClaimSource(True, DRIVER, "pvc-1"), content=content))
    assert plan.actions == (SetStatus({"boundVolumeSnapshotContentName": "snapcontent-u1", "readyToUse": True,
                                       "restoreSize": "64Mi", "creationTime": "2025-12-01T12:00:00Z",
                                       "error": None}),)


def test_a_deleted_snapshot_waits_for_restores_then_deletes_its_content() -> None:
    deleting = vs(deleting=True, finalizers=(FINALIZER_AS_SOURCE, FINALIZER_BOUND))
    content = parse_content(vsc())
    waiting = plan_snapshot(observe(deleting, content=content, restoring=True))
    assert waiting.requeue and not any(isinstance(a, DeleteContent | SetFinalizers) for a in waiting.actions)
    done = plan_snapshot(observe(deleting, content=content))
    assert done.actions == (DeleteContent("snapcontent-u1"),
                            SetFinalizers(remove=(FINALIZER_AS_SOURCE, FINALIZER_BOUND)))
    retained = plan_snapshot(observe(deleting, content=parse_content(vsc(policy="Retain"))))
    assert retained.actions == (SetFinalizers(remove=(FINALIZER_AS_SOURCE, FINALIZER_BOUND)),)


def test_a_content_is_taken_then_freed_by_its_policy() -> None:
    content = parse_content(vsc(finalizers=()))
    taken = plan_content(ContentObservation(content, DRIVER, NOW, snapshot_bound=True, volume=VOLUME, in_use=True))
    assert taken.actions == (SetFinalizers(add=(FINALIZER_CONTENT,)), TakeSnapshot(VOLUME, "snapcontent-u1", True))
    ready = {"readyToUse": True, "snapshotHandle": "snapcontent-u1", "restoreSize": 1, "creationTime": 1}
    assert plan_content(ContentObservation(parse_content(vsc(deleting=True, status=ready)), DRIVER, NOW,
                                           snapshot_bound=True)).actions == ()  # its snapshot still uses it
    freed = plan_content(ContentObservation(parse_content(vsc(deleting=True, status=ready)), DRIVER, NOW))
    assert freed.actions == (DeleteSnapshotData("snapcontent-u1"), SetFinalizers(remove=(FINALIZER_CONTENT,)))
    kept = plan_content(ContentObservation(parse_content(vsc(deleting=True, policy="Retain", status=ready)),
                                           DRIVER, NOW))
    assert kept.actions == (SetFinalizers(remove=(FINALIZER_CONTENT,)),)
    foreign = parse_content({**vsc(), "spec": {**vsc()["spec"], "driver": "ebs.csi.aws.com"}})
    assert plan_content(ContentObservation(foreign, DRIVER, NOW)).actions == ()


def test_copies_are_refused_as_external_provisioner_refuses_them() -> None:
    ref = DataSourceRef("", "PersistentVolumeClaim", "src", None)
    ready = CopySource(ref, found=True, bound=True, ready=True, phase="Bound", storage_class="local",
                       size_bytes=64 << 20, volume_mode=VolumeMode.FILESYSTEM, driver=DRIVER, volume=VOLUME)
    drivers = (DRIVER, "pycdi.local/hostpath")
    assert plan_copy("new", "ns", "local", 64 << 20, VolumeMode.FILESYSTEM, ready, drivers) == CopyFrom(volume=VOLUME)
    fs = VolumeMode.FILESYSTEM
    cases: dict[str, tuple[CopySource, str, int, VolumeMode, bool]] = {
        "accessing other/src of PersistentVolumeClaim dataSource from ns/new isn't allowed": (
            CopySource(DataSourceRef("", "PersistentVolumeClaim", "src", "other")), "local", 64 << 20, fs, False),
        "the PVC DataSource src must have a status of Bound.  Got Pending": (
            CopySource(ref, found=True, phase="Pending"), "local", 64 << 20, fs, True),
        "must be in the same storage class for cloning.  Source is in local, but new PVC is in local-xfs": (
            ready, "local-xfs", 64 << 20, fs, False),
        'claim in dataSource not bound or invalid (its volume is of CSI driver "ebs.csi.aws.com"': (
            CopySource(ref, True, True, True, phase="Bound", storage_class="local", driver="ebs.csi.aws.com"),
            "local", 64 << 20, fs, False),
        "must have the same volume mode for cloning.  Source is Filesystem, but new PVC requested Block": (
            ready, "local", 64 << 20, VolumeMode.BLOCK, False),
        f"requested {32 << 20} but source is {64 << 20}": (ready, "local", 32 << 20, fs, False),
    }
    for expected, (source, class_name, size, mode, waiting) in cases.items():
        decided = plan_copy("new", "ns", class_name, size, mode, source, drivers)
        assert isinstance(decided, Refuse) and expected in decided.message, (expected, decided)
        assert decided.message.startswith("error getting handle for DataSource Type PersistentVolumeClaim by Name")
        assert decided.waiting == waiting, expected
    snapshot = DataSourceRef("snapshot.storage.k8s.io", "VolumeSnapshot", "snap", None)
    unready = plan_copy("new", "ns", "local", 1, fs, CopySource(snapshot, found=True, bound=True), drivers)
    assert isinstance(unready, Refuse) and unready.waiting and unready.message.endswith("snapshot snap is not Ready")
    assert not DataSourceRef("cdi.kubevirt.io", "VolumeCloneSource", "x", None).copies
    assert not DataSourceRef("", "VolumeSnapshot", "x", None).copies  # a snapshot is in its own API group


def test_a_taken_snapshot_outlives_its_source_claim() -> None:
    """The source claim of a ready snapshot may be deleted (a DataImportCron does exactly that): the snapshot
    stays ready and bound, as with external-snapshotter."""
    ready = parse_content(vsc(status={"readyToUse": True, "restoreSize": 64 << 20, "snapshotHandle": "h",
                                      "creationTime": 1_764_590_400_000_000_000}))
    named = vs(volumeSnapshotClassName="local-snapshots", finalizers=(FINALIZER_AS_SOURCE, FINALIZER_BOUND))
    named["status"] = {"boundVolumeSnapshotContentName": "snapcontent-u1", "readyToUse": True, "restoreSize": "64Mi",
                       "creationTime": "2025-12-01T12:00:00Z"}
    plan = plan_snapshot(observe(named, classes=(DEFAULT,), claim=None, content=ready))
    assert plan.actions == ()
