"""A clone DataVolume's status from its target claim: the populator's phase → upstream's DataVolume phase and
event, the host-assisted copy's progress, and the legacy (no populator) copy's pod phase. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.clone.datavolume import CloneSourceRef, clone_operation, progress_of
from cdi.controllers.datavolume.status import Observed, dv_status

NOW = "2026-11-21T06:00:00Z"
SOURCE = CloneSourceRef("PersistentVolumeClaim", "golden-images", "golden")


def claim(notes: dict[str, str], phase: str = "Pending") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "vm-disk", "namespace": "vms", "annotations": notes},
            "spec": {"storageClassName": "local"}, "status": {"phase": phase}}


def status(notes: dict[str, str], phase: str = "Pending", previous: str = "CloneScheduled",
           source: CloneSourceRef = SOURCE) -> tuple[dict[str, Any], tuple[tuple[str, str, str], ...]]:
    dv = {"metadata": {"name": "vm-disk", "namespace": "vms"}, "status": {"phase": previous}}
    pvc = claim(notes, phase)
    plan = dv_status(Observed(dv, pvc, False, progress_of(pvc), None, NOW), clone_operation(source, "vms", "vm-disk"))
    return plan.status, plan.events


@pytest.mark.parametrize(("clone_phase", "dv_phase", "event"), [
    ("Pending", "CloneScheduled", None),
    ("Snapshot", "SnapshotForSmartCloneInProgress",
     "Creating snapshot for smart-clone is in progress (for pvc golden-images/golden)"),
    ("SnapshotClone", "CloneFromSnapshotSourceInProgress",
     "Creating PVC from snapshot source is in progress (for pvc golden-images/golden)"),
    ("CSIClone", "CSICloneInProgress", "CSI Volume clone in progress (for pvc golden-images/golden)"),
    ("PrepClaim", "PrepClaimInProgress", "Prepping PersistentVolumeClaim for DataVolume vms/vm-disk"),
    ("Rebind", "RebindInProgress", "Rebinding PersistentVolumeClaim for DataVolume vms/vm-disk"),
    ("HostClone", "CloneInProgress", "Cloning from golden-images/golden into vms/vm-disk in progress"),
    ("Error", "CloneScheduled", None),  # upstream: an event on the claim, the DataVolume is not failed
])
def test_populator_phases_map_to_upstreams_datavolume_phases(clone_phase: str, dv_phase: str,
                                                             event: str | None) -> None:
    found, events = status({ann.ANN_CLONE_PHASE: clone_phase})
    assert found["phase"] == dv_phase
    assert [message for _, _, message in events] == ([event] if event else [])


def test_success_says_so_with_full_progress() -> None:
    found, events = status({ann.ANN_CLONE_PHASE: "Succeeded"}, phase="Bound", previous="RebindInProgress")
    assert (found["phase"], found["progress"]) == ("Succeeded", "100.0%")
    assert ("Normal", "CloneSucceeded", "Successfully cloned from golden-images/golden into vms/vm-disk") in events


def test_host_assisted_progress_reaches_the_datavolume() -> None:
    found, _ = status({ann.ANN_CLONE_PHASE: "HostClone", ann.ANN_POPULATOR_PROGRESS: "45.27%"},
                      previous="CloneInProgress")
    assert (found["phase"], found["progress"]) == ("CloneInProgress", "45.27%")


def test_snapshot_source_says_snapshot() -> None:
    source = CloneSourceRef("VolumeSnapshot", "golden-images", "golden-snap")
    _, events = status({ann.ANN_CLONE_PHASE: "SnapshotClone"}, source=source)
    assert events[-1][2] == "Creating PVC from snapshot source is in progress (for snapshot golden-images/golden-snap)"


@pytest.mark.parametrize(("pod_phase", "dv_phase"), [
    (None, "CloneScheduled"), ("Pending", "CloneScheduled"), ("Running", "CloneInProgress"), ("Succeeded", "Succeeded"),
])
def test_copy_without_a_populator_follows_the_worker_pod(pod_phase: str | None, dv_phase: str) -> None:
    notes = {ann.ANN_CLONE_REQUEST: "golden-images/golden"}
    if pod_phase:
        notes[ann.ANN_POD_PHASE] = pod_phase
    found, _ = status(notes, phase="Bound")
    assert found["phase"] == dv_phase
