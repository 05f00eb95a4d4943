"""The PersistentVolume the provisioner creates and the patches that bind a claim to a volume.

Pure renderers: `cdi.embedded.volumes.provisioner` applies them through the `Cluster` (expansion's
PV capacity and claim conditions among them), and the reclaimer's finalizer patch lives here too.
The PV is a CSI volume of `CSI_DRIVER_NAME` (`spec.csi`: the driver, the volume handle = the PV name,
the fsType of a Filesystem volume, and where the pool keeps it as volumeAttributes), with node affinity
to the one embedded node, as a node-local CSI driver's volumes have. Its current path (a mount
directory, a loop device or a plain directory, which can change after a restart while `spec.csi`
cannot) is the `pycdi.local/volume-path` annotation; PVs of earlier versions have `spec.local.path`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdi.api.core import VolumeMode
from cdi.cluster.protocol import Object
from cdi.embedded.volumes.claim_plan import Provision
from cdi.embedded.volumes.expansion import RESIZE_CONDITIONS
from cdi.embedded.volumes.keys import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_STORAGE_PROVISIONER,
    ANN_VOLUME_BACKING,
    ANN_VOLUME_PATH,
    ANN_VOLUME_POOL,
    CSI_DRIVER_NAME,
    FINALIZER_VOLUME_PROTECTION,
    HOSTNAME_LABEL,
    NODE_NAME,
)
from cdi.embedded.volumes.objects import ClaimView
from cdi.embedded.volumes.pool import VolumeInfo
from cdi.quantity import format_quantity


def claim_reference(claim: ClaimView) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": claim.namespace,
            "name": claim.name, "uid": claim.uid}


def node_affinity(node: str = NODE_NAME) -> dict[str, Any]:
    return {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}


def render_volume(claim: ClaimView, plan: Provision, info: VolumeInfo) -> Object:
    """The PV for a newly provisioned volume, already claimed by `claim`."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": plan.volume_name,
            "annotations": {ANN_PROVISIONED_BY: CSI_DRIVER_NAME, **info.annotations()},
            "finalizers": [FINALIZER_VOLUME_PROTECTION],
        },
        "spec": {
            "capacity": {"storage": format_quantity(plan.size_bytes)},
            "accessModes": list(plan.access_modes),
            "volumeMode": plan.volume_mode.value,
            "storageClassName": plan.storage_class_name,
            "persistentVolumeReclaimPolicy": plan.reclaim_policy.value,
            "claimRef": claim_reference(claim),
            "csi": csi_source(info),
            "nodeAffinity": node_affinity(),
        },
    }


def csi_source(info: VolumeInfo) -> dict[str, Any]:
    """`spec.csi` of a volume: what a CSI driver's PV carries (immutable once created)."""
    source: dict[str, Any] = {"driver": CSI_DRIVER_NAME, "volumeHandle": info.name,
                              "volumeAttributes": {ANN_VOLUME_POOL: info.pool, ANN_VOLUME_BACKING: info.backing}}
    if info.volume_mode == VolumeMode.FILESYSTEM and info.fs_type:
        source["fsType"] = info.fs_type
    return source


def moved_volume_patch(info: VolumeInfo) -> dict[str, Any]:
    """Record a volume's new path (a loop device renumbered after a restart) on its PV. Only the
    annotation: a PV's volume source is immutable on a real API server, so the `spec.local.path` of a PV
    an earlier version stored keeps the first path, and readers take the annotation first."""
    return {"metadata": {"annotations": {ANN_VOLUME_PATH: info.path}}}


def reserve_patch(claim: ClaimView, resource_version: str) -> dict[str, Any]:
    """Point a volume's claimRef at `claim`, only if nobody changed the volume since it was read."""
    return {"metadata": {"resourceVersion": resource_version, "annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}},
            "spec": {"claimRef": claim_reference(claim)}}


def provisioner_patch(provisioner: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {ANN_STORAGE_PROVISIONER: provisioner,
                                         ANN_BETA_STORAGE_PROVISIONER: provisioner}}}


def bind_claim_patch(volume_name: str, *, by_controller: bool) -> dict[str, Any]:
    annotations = {ANN_BIND_COMPLETED: "yes", **({ANN_BOUND_BY_CONTROLLER: "yes"} if by_controller else {})}
    return {"metadata": {"annotations": annotations}, "spec": {"volumeName": volume_name}}


def claim_bound_status(capacity: str, access_modes: tuple[str, ...]) -> dict[str, Any]:
    return {"status": {"phase": "Bound", "capacity": {"storage": capacity}, "accessModes": list(access_modes)}}


def resize_condition_status(claim: Object, type_: str, message: str, now: datetime) -> dict[str, Any]:
    """Set one resize condition on a claim (dropping the other), keeping its other conditions (a merge
    patch replaces the list whole)."""
    condition = {"type": type_, "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), **({"message": message} if message else {})}
    return {"status": {"conditions": [*_other_conditions(claim), condition]}}


def resized_status(claim: Object, capacity: str, access_modes: tuple[str, ...]) -> dict[str, Any]:
    """A claim's status once its volume has grown: the new capacity, the resize conditions gone."""
    status = claim_bound_status(capacity, access_modes)
    status["status"]["conditions"] = _other_conditions(claim) or None
    return status


def _other_conditions(claim: Object) -> list[Any]:
    conditions = (claim.get("status") or {}).get("conditions") or []
    return [c for c in conditions if not (isinstance(c, dict) and c.get("type") in RESIZE_CONDITIONS)]


def volume_capacity_patch(size_bytes: int) -> dict[str, Any]:
    return {"spec": {"capacity": {"storage": format_quantity(size_bytes)}}}


def phase_status(phase: str) -> dict[str, Any]:
    return {"status": {"phase": phase}}


def without_finalizer(obj: Object, finalizer: str = FINALIZER_VOLUME_PROTECTION) -> dict[str, Any]:
    """A merge patch dropping one finalizer, conditional on the object's resourceVersion (merge patches
    replace lists whole, so a concurrent change to the list must not be lost)."""
    meta = obj.get("metadata") or {}
    remaining = [item for item in meta.get("finalizers") or [] if item != finalizer]
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"), "finalizers": remaining or None}}
