"""Upstream's state metrics as tables of observed objects → samples (`cdi.monitoring.state`):
kubevirt_cdi_datavolume_pending, kubevirt_cdi_storageprofile_info's labels, kubevirt_cdi_cr_ready, and the
worker view `cdi serve` adds (import/clone progress by claim uid, kube-state-metrics' restart counter)."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.contracts import metrics as m
from cdi.controllers.capabilities import UNSUPPORTED_PROVISIONERS
from cdi.monitoring.state import (
    ContainerRestarts,
    ObservedState,
    ProfileInfo,
    Progress,
    cr_ready,
    datavolume_pending,
    pod_restarts,
    progress,
    storage_profile_info,
)

Obj = dict[str, Any]


def dv(name: str, phase: str | None = None, *, pvc: Obj | None = None, storage: Obj | None = None,
       progress_text: str | None = None, claim: str | None = None) -> Obj:
    spec: Obj = {"source": {"http": {"url": "http://example.org/disk.img"}}}
    if pvc is not None:
        spec["pvc"] = pvc
    if storage is not None:
        spec["storage"] = storage
    status: Obj = {}
    if phase is not None:
        status["phase"] = phase
    if progress_text is not None:
        status["progress"] = progress_text
    if claim is not None:
        status["claimName"] = claim
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status}


SIZE = {"resources": {"requests": {"storage": "1Gi"}}}


@pytest.mark.parametrize(("volumes", "expected"), [
    ([], 0),
    ([dv("a"), dv("b", "Pending", storage=SIZE)], 2),  # no status yet, or Pending: both count
    ([dv("a", "Pending", pvc=SIZE)], 1),  # spec.pvc without a class
    ([dv("a", "Pending", storage={**SIZE, "storageClassName": "fast"})], 0),  # names a class
    ([dv("a", "Pending", pvc={**SIZE, "storageClassName": ""})], 0),  # an explicit "" names one (no class at all)
    ([dv("a", "Pending", pvc={**SIZE, "storageClassName": "fast"}, storage=SIZE)], 0),  # spec.pvc wins
    ([dv("a", "ImportScheduled"), dv("b", "WaitForFirstConsumer"), dv("c", "Succeeded"), dv("d", "Failed")], 0),
])
def test_datavolume_pending(volumes: list[Obj], expected: int) -> None:
    assert datavolume_pending(volumes) == expected


def sc(name: str, provisioner: str, **annotations: str) -> Obj:
    return {"metadata": {"name": name, "annotations": annotations}, "provisioner": provisioner}


def profile(name: str, provisioner: str | None, sets: list[Obj], clone: str | None = None) -> Obj:
    status: Obj = {"storageClass": name, "claimPropertySets": sets}
    if provisioner is not None:
        status["provisioner"] = provisioner
    if clone is not None:
        status["cloneStrategy"] = clone
    return {"metadata": {"name": name}, "status": status}


RWO = {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}
RWX = {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}
DEFAULT = {ann.ANN_DEFAULT_STORAGE_CLASS: "true"}
VIRT_DEFAULT = {ann.ANN_DEFAULT_VIRT_STORAGE_CLASS: "true"}


def info(name: str, provisioner: str, *, complete: bool = True, default: bool = False, virtdefault: bool = False,
         rwx: bool = False, smartclone: bool = False) -> ProfileInfo:
    return ProfileInfo(name, provisioner, complete, default, virtdefault, rwx, smartclone,
                       degraded=not rwx or not smartclone)


CSI = [{"metadata": {"name": "rbd.csi.ceph.com"}}]
VSC = [{"metadata": {"name": "snap"}, "driver": "rbd.csi.ceph.com"}]


@pytest.mark.parametrize(("classes", "profiles", "drivers", "snapshot_classes", "expected"), [
    # a complete RWO profile of the default class, no snapshot class: degraded (no RWX, no smart clone)
    ([sc("local", "kubevirt.io.hostpath-provisioner", **DEFAULT)],
     [profile("local", "kubevirt.io.hostpath-provisioner", [RWO])], [], [],
     [info("local", "kubevirt.io.hostpath-provisioner", default=True)]),
    # RWX and a VolumeSnapshotClass of its driver (strategy unset = snapshot): smart clone, not degraded
    ([sc("ceph", "rbd.csi.ceph.com", **VIRT_DEFAULT)], [profile("ceph", "rbd.csi.ceph.com", [RWX, RWO])], [], VSC,
     [info("ceph", "rbd.csi.ceph.com", virtdefault=True, rwx=True, smartclone=True)]),
    # csi-clone needs a CSIDriver named after the provisioner; the snapshot class does not count for it
    ([sc("ceph", "rbd.csi.ceph.com")], [profile("ceph", "rbd.csi.ceph.com", [RWX], "csi-clone")], [], VSC,
     [info("ceph", "rbd.csi.ceph.com", rwx=True)]),
    ([sc("ceph", "rbd.csi.ceph.com")], [profile("ceph", "rbd.csi.ceph.com", [RWX], "csi-clone")], CSI, [],
     [info("ceph", "rbd.csi.ceph.com", rwx=True, smartclone=True)]),
    # copy (host-assisted) is never a smart clone
    ([sc("ceph", "rbd.csi.ceph.com")], [profile("ceph", "rbd.csi.ceph.com", [RWX], "copy")], CSI, VSC,
     [info("ceph", "rbd.csi.ceph.com", rwx=True)]),
    # no sets, or a set without a volume mode: incomplete; an unsupported provisioner is complete anyway
    ([sc("x", "example.org/unknown")], [profile("x", "example.org/unknown", [])], [], [],
     [info("x", "example.org/unknown", complete=False)]),
    ([sc("x", "example.org/unknown")], [profile("x", "example.org/unknown", [{"accessModes": ["ReadWriteOnce"]}])],
     [], [], [info("x", "example.org/unknown", complete=False)]),
    ([sc("bucket", "stork-snapshot")], [profile("bucket", "stork-snapshot", [])], [], [],
     [info("bucket", "stork-snapshot")]),
    # a profile whose status has no provisioner yet: no series; a "false" annotation is not default
    ([sc("local", "p", **{ann.ANN_DEFAULT_STORAGE_CLASS: "false"})],
     [profile("local", "p", [RWO]), profile("new", None, [])], [], [], [info("local", "p")]),
])
def test_storage_profile_info(classes: list[Obj], profiles: list[Obj], drivers: list[Obj],
                              snapshot_classes: list[Obj], expected: list[ProfileInfo]) -> None:
    state = ObservedState(storage_classes=classes, storage_profiles=profiles, csi_drivers=drivers,
                          snapshot_classes=snapshot_classes, unsupported_provisioners=UNSUPPORTED_PROVISIONERS)
    assert storage_profile_info(state) == expected


def test_single_node_is_not_degraded_for_lack_of_rwx() -> None:
    state = ObservedState(storage_classes=[sc("ceph", "rbd.csi.ceph.com")],
                          storage_profiles=[profile("ceph", "rbd.csi.ceph.com", [RWO])], snapshot_classes=VSC,
                          single_node=True)
    assert storage_profile_info(state)[0].degraded is False
    assert storage_profile_info(state)[0].labels() == ["ceph", "rbd.csi.ceph.com", "true", "false", "false",
                                                       "false", "true", "false"]


def cdi(*conditions: tuple[str, str]) -> Obj:
    return {"metadata": {"name": "cdi"},
            "status": {"conditions": [{"type": kind, "status": status} for kind, status in conditions]}}


@pytest.mark.parametrize(("cdis", "expected"), [
    ([], -1.0),  # no CDI resource: upstream's "not initialised", which CDINotReady does not count
    ([cdi()], 0.0),
    ([cdi(("Available", "False"), ("Progressing", "True"))], 0.0),
    ([cdi(("Available", "True"), ("Degraded", "False"))], 1.0),
    ([cdi(("Available", "False")), cdi(("Available", "True"))], 1.0),  # the active one of two
])
def test_cr_ready(cdis: list[Obj], expected: float) -> None:
    assert cr_ready(cdis) == expected


def claim(name: str, uid: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid}}


def test_progress_by_claim_uid() -> None:
    state = ObservedState(
        data_volumes=[dv("imp", "ImportInProgress", progress_text="45.27%"),
                      dv("cl", "CloneInProgress", progress_text="10.00%", claim="cl"),
                      dv("na", "ImportInProgress", progress_text="N/A"),
                      dv("done", "Succeeded", progress_text="100.0%"),
                      dv("orphan", "ImportInProgress", progress_text="3.00%")],
        claims=[claim("imp", "uid-imp"), claim("cl", "uid-cl"), claim("na", "uid-na"), claim("done", "uid-done")])
    assert progress(state, m.IMPORT_PROGRESS, m.CLONE_PROGRESS) == [
        Progress(m.CLONE_PROGRESS, "uid-cl", 10.0), Progress(m.IMPORT_PROGRESS, "uid-imp", 45.27)]


def test_pod_restarts_per_container() -> None:
    pod = {"metadata": {"name": "importer-disk", "namespace": "default", "uid": "u1"},
           "status": {"containerStatuses": [{"name": "importer", "restartCount": 4}]}}
    fresh = {"metadata": {"name": "cdi-upload-disk", "namespace": "ns", "uid": "u2"}, "status": {}}
    assert pod_restarts([pod, fresh]) == [ContainerRestarts("default", "importer-disk", "u1", "importer", 4)]
