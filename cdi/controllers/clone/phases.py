"""The clone phases: each checks whether its work is already done, and if not, does the next step.

The populator (`cdi.controllers.clone.populator`) runs a plan's phases in order (`plans.phases_for`)
on every reconcile; the first phase that answers `Pending` stops the walk and names the target's
`clonePhase`. Every phase finds what an earlier run made by name (`plans.tmp_*_name`) before making
it, so a control plane killed between any two API calls carries on where it stopped.

    Snapshot       a VolumeSnapshot of the source claim; done once the snapshot has a creationTime
    SnapshotClone  a claim restored from the snapshot; done once bound
    CSIClone       a claim whose dataSourceRef is the source claim; done once bound
    PrepClaim      grows the temporary claim to the target's request; done once its capacity is enough
    HostClone      a claim marked `k8s.io/CloneRequest` that the host-assisted clone controllers
                   fill (`cdi.controllers.hostclone`); done once its worker pod Succeeded
    Rebind         hands the temporary claim's volume to the target (PV claimRef); done once bound

A phase raises `CloneFailure` when it cannot go on without a person (its temporary claim vanished,
the volume is bound to neither claim).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.errors import AlreadyExists
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.annotations import ClonePhase
from cdi.controllers.clone.facts import SNAPSHOT_API, SNAPSHOT_GROUP, capacity_of, get_or_none, quantity_or_none
from cdi.controllers.clone.plans import (
    SNAPSHOT_SOURCE,
    tmp_claim_name,
    tmp_snapshot_name,
    tmp_source_claim_name,
)
from cdi.controllers.clone.strategy import Strategy
from cdi.controllers.meta import annotations_of, labels_of, name_of, namespace_of, storage_request, uid_of
from cdi.controllers.populators.rebind import Handed, RebindFailed, claim_ref_patch, handover
from cdi.quantity import format_quantity

# What the host-assisted clone's temporary claim reports that the target should show too.
MIRRORED_FROM_HOST_CLONE = (ann.ANN_RUNNING_CONDITION, ann.ANN_RUNNING_CONDITION_REASON,
                            ann.ANN_RUNNING_CONDITION_MESSAGE, ann.ANN_POD_RESTARTS, ann.ANN_POD_LAST_FAILURE)


class CloneFailure(Exception):
    """A clone cannot go on as it stands; the message goes to `cloneError` and a Warning event."""


@dataclass(frozen=True)
class CloneJob:
    """One clone as the phases see it: the target claim, the source and the recorded choice."""

    target: Object
    source_kind: str  # plans.CLAIM_SOURCE or plans.SNAPSHOT_SOURCE
    source_namespace: str
    source_name: str
    strategy: Strategy
    snapshot_class: str | None = None
    preallocation: bool = False

    @property
    def uid(self) -> str:
        return uid_of(self.target)

    @property
    def target_spec(self) -> dict[str, Any]:
        return dict(self.target.get("spec") or {})

    @property
    def target_request(self) -> int:
        return storage_request(self.target_spec) or 0

    def tmp_metadata(self, name: str, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Metadata of a temporary object: labelled for clean-up, annotated with its target."""
        labels = {ann.LABEL_OWNED_BY_UID: self.uid, ann.LABEL_EXCLUDE_FROM_VELERO_BACKUP: "true",
                  ann.LABEL_APP: ann.APP_NAME}
        notes = {ann.ANN_OWNER_REF: f"{namespace_of(self.target)}/{name_of(self.target)}", **(annotations or {})}
        selected = annotations_of(self.target).get(ann.ANN_SELECTED_NODE)
        if selected:
            notes.setdefault(ann.ANN_SELECTED_NODE, selected)
        return {"name": name, "namespace": self.source_namespace, "labels": labels, "annotations": notes}


@dataclass(frozen=True)
class Pending:
    """The phase is not done: why, when to look again, and what the target should show meanwhile."""

    message: str
    requeue_after: float = 2.0
    progress: str | None = None
    mirrored: Mapping[str, str] = field(default_factory=dict)


PhaseRunner = Callable[[Cluster, CloneJob], Awaitable[Pending | None]]


async def create_quietly(cluster: Cluster, obj: Object) -> None:
    """Create `obj`; an object of that name already there (an earlier run made it) is fine."""
    try:
        await cluster.create(obj)
    except AlreadyExists:
        pass


def is_bound(claim: Object) -> bool:
    return (claim.get("status") or {}).get("phase") == "Bound" and bool((claim.get("spec") or {}).get("volumeName"))


def claim_object(metadata: dict[str, Any], access_modes: list[str], volume_mode: str, class_name: str | None,
                 request: int, data_source: dict[str, str] | None = None) -> Object:
    spec: dict[str, Any] = {"accessModes": access_modes, "volumeMode": volume_mode,
                            "resources": {"requests": {"storage": format_quantity(request)}}}
    if class_name:
        spec["storageClassName"] = class_name
    if data_source is not None:
        spec["dataSource"] = dict(data_source)
        spec["dataSourceRef"] = dict(data_source)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


async def snapshot_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    name = tmp_snapshot_name(job.uid)
    snapshot = await get_or_none(cluster, SNAPSHOT_API, "VolumeSnapshot", name, job.source_namespace)
    if snapshot is None:
        spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": job.source_name}}
        if job.snapshot_class:
            spec["volumeSnapshotClassName"] = job.snapshot_class
        await create_quietly(cluster, {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
                                       "metadata": job.tmp_metadata(name), "spec": spec})
        return Pending(f"creating snapshot {job.source_namespace}/{name}")
    status = snapshot.get("status") or {}
    if status.get("creationTime"):
        return None
    problem = (status.get("error") or {}).get("message")
    return Pending(f"snapshot {name} failed: {problem}" if problem else f"waiting for snapshot {name}", 5.0)


def _restore_claim_name(job: CloneJob) -> str:
    return tmp_source_claim_name(job.uid) if job.strategy == Strategy.COPY else tmp_claim_name(job.uid)


async def _first_class_of_driver(cluster: Cluster, driver: str) -> str | None:
    classes = sorted((await cluster.list("storage.k8s.io/v1", "StorageClass")).items, key=name_of)
    return next((name_of(c) for c in classes if c.get("provisioner") == driver), None)


async def snapshot_clone_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    snapshot_name = job.source_name if job.source_kind == SNAPSHOT_SOURCE else tmp_snapshot_name(job.uid)
    snapshot = await get_or_none(cluster, SNAPSHOT_API, "VolumeSnapshot", snapshot_name, job.source_namespace)
    if snapshot is None:
        raise CloneFailure(f"snapshot {job.source_namespace}/{snapshot_name} does not exist")
    status = snapshot.get("status") or {}
    if not status.get("readyToUse"):
        return Pending(f"waiting for snapshot {snapshot_name} to be ready to use", 2.0)
    name = _restore_claim_name(job)
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", name, job.source_namespace)
    if claim is None:
        await create_quietly(cluster, await _restored_claim(cluster, job, name, snapshot_name, status))
        return Pending(f"restoring snapshot {snapshot_name} into {name}")
    return None if is_bound(claim) else Pending(f"waiting for {name} to be bound")


async def _restored_claim(cluster: Cluster, job: CloneJob, name: str, snapshot_name: str,
                          status: dict[str, Any]) -> Object:
    spec = job.target_spec
    request = quantity_or_none(status.get("restoreSize")) or job.target_request
    source = {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": snapshot_name}
    if job.strategy != Strategy.COPY:
        return claim_object(job.tmp_metadata(name), list(spec.get("accessModes") or ["ReadWriteOnce"]),
                            str(spec.get("volumeMode") or "Filesystem"), spec.get("storageClassName"),
                            request, source)
    # A copy from a snapshot: restore it where its driver can, in the snapshotted volume's mode.
    content_name = status.get("boundVolumeSnapshotContentName")
    content = await get_or_none(cluster, SNAPSHOT_API, "VolumeSnapshotContent", content_name) if content_name else None
    content_spec = (content or {}).get("spec") or {}
    class_name = await _first_class_of_driver(cluster, str(content_spec.get("driver") or ""))
    if class_name is None:
        raise CloneFailure(f"no storage class has the provisioner {content_spec.get('driver')!r} "
                           f"of snapshot {snapshot_name}")
    mode = str(content_spec.get("sourceVolumeMode") or spec.get("volumeMode") or "Filesystem")
    return claim_object(job.tmp_metadata(name), ["ReadWriteOnce"], mode, class_name, request, source)


async def csi_clone_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    name = tmp_claim_name(job.uid)
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", name, job.source_namespace)
    if claim is not None:
        return None if is_bound(claim) else Pending(f"waiting for the CSI clone {name} to be bound")
    source = await get_or_none(cluster, "v1", "PersistentVolumeClaim", job.source_name, job.source_namespace)
    if source is None:
        raise CloneFailure(f"source claim {job.source_namespace}/{job.source_name} does not exist")
    capacity = capacity_of(source)
    if not is_bound(source) or capacity is None:
        return Pending(f"waiting for the source claim {job.source_name} to be bound", 5.0)
    spec = job.target_spec
    await create_quietly(cluster, claim_object(
        job.tmp_metadata(name), list(spec.get("accessModes") or ["ReadWriteOnce"]),
        str(spec.get("volumeMode") or "Filesystem"), spec.get("storageClassName"), capacity,
        {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": job.source_name}))
    return Pending(f"cloning {job.source_name} into {name}")


async def prep_claim_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    copy_of_snapshot = job.source_kind == SNAPSHOT_SOURCE and job.strategy == Strategy.COPY
    name = tmp_source_claim_name(job.uid) if copy_of_snapshot else tmp_claim_name(job.uid)
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", name, job.source_namespace)
    if claim is None:
        raise CloneFailure(f"temporary claim {job.source_namespace}/{name} disappeared")
    if not is_bound(claim):
        return Pending(f"waiting for {name} to be bound")
    desired = storage_request(claim.get("spec") or {}) or 0 if copy_of_snapshot else job.target_request
    capacity = capacity_of(claim) or 0
    if capacity >= desired:
        return None
    if (storage_request(claim.get("spec") or {}) or 0) < desired:
        await cluster.patch("v1", "PersistentVolumeClaim", name,
                            {"spec": {"resources": {"requests": {"storage": format_quantity(desired)}}}},
                            job.source_namespace)
    return Pending(f"expanding {name} to {format_quantity(desired)}")


async def host_clone_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    source_name = tmp_source_claim_name(job.uid) if job.source_kind == SNAPSHOT_SOURCE else job.source_name
    name = tmp_claim_name(job.uid)
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", name, job.source_namespace)
    if claim is None:
        await create_quietly(cluster, _host_clone_claim(job, name, source_name))
        return Pending(f"host-assisted clone of {source_name} into {name} scheduled")
    notes = annotations_of(claim)
    if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
        return None
    mirrored = {key: notes[key] for key in MIRRORED_FROM_HOST_CLONE if key in notes}
    return Pending(f"host-assisted clone into {name} in progress", 2.0, notes.get(ann.ANN_POPULATOR_PROGRESS),
                   mirrored)


def _host_clone_claim(job: CloneJob, name: str, source_name: str) -> Object:
    spec = job.target_spec
    target_notes = annotations_of(job.target)
    notes = {ann.ANN_CLONE_REQUEST: f"{job.source_namespace}/{source_name}", ann.ANN_IMMEDIATE_BINDING: "true",
             ann.ANN_OWNER_UID: job.uid}
    if ann.ANN_CONTENT_TYPE in target_notes:
        notes[ann.ANN_CONTENT_TYPE] = target_notes[ann.ANN_CONTENT_TYPE]
    if job.preallocation:
        notes[ann.ANN_PREALLOCATION_REQUESTED] = "true"
    return claim_object(job.tmp_metadata(name, notes), list(spec.get("accessModes") or ["ReadWriteOnce"]),
                        str(spec.get("volumeMode") or "Filesystem"), spec.get("storageClassName"), job.target_request)


async def rebind_phase(cluster: Cluster, job: CloneJob) -> Pending | None:
    if (job.target.get("spec") or {}).get("volumeName"):
        return None
    name = tmp_claim_name(job.uid)
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", name, job.source_namespace)
    if claim is None:
        raise CloneFailure(f"temporary claim {job.source_namespace}/{name} disappeared before its volume "
                           "was handed over")
    volume_name = (claim.get("spec") or {}).get("volumeName")
    volume = await get_or_none(cluster, "v1", "PersistentVolume", volume_name) if volume_name else None
    if volume is None:
        return Pending(f"waiting for {name} to be bound")
    try:
        handed = handover(volume, claim, job.target)
    except RebindFailed as e:
        raise CloneFailure(str(e)) from e
    if handed == Handed.DONE:
        return Pending(f"waiting for the target claim to bind to {volume_name}")
    moved = claim_ref_patch(volume, job.target)
    await cluster.patch("v1", "PersistentVolume", moved.volume, moved.patch)
    return Pending(f"handing volume {volume_name} to the target claim")


RUNNERS: dict[ClonePhase, PhaseRunner] = {
    ClonePhase.SNAPSHOT: snapshot_phase,
    ClonePhase.SNAPSHOT_CLONE: snapshot_clone_phase,
    ClonePhase.CSI_CLONE: csi_clone_phase,
    ClonePhase.PREP_CLAIM: prep_claim_phase,
    ClonePhase.HOST_CLONE: host_clone_phase,
    ClonePhase.REBIND: rebind_phase,
}


def working_object(job: CloneJob, phase: ClonePhase) -> tuple[str, str]:
    """(kind, name) of the temporary object a phase waits on, whose events tell why it waits."""
    if phase == ClonePhase.SNAPSHOT:
        return "VolumeSnapshot", tmp_snapshot_name(job.uid)
    if phase in (ClonePhase.SNAPSHOT_CLONE, ClonePhase.PREP_CLAIM):
        copy_of_snapshot = job.source_kind == SNAPSHOT_SOURCE and job.strategy == Strategy.COPY
        return "PersistentVolumeClaim", tmp_source_claim_name(job.uid) if copy_of_snapshot else tmp_claim_name(job.uid)
    return "PersistentVolumeClaim", tmp_claim_name(job.uid)


async def host_clone_results(cluster: Cluster, job: CloneJob) -> dict[str, str]:
    """What a finished host-assisted clone reports that the target keeps (CloneOf, preallocation)."""
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", tmp_claim_name(job.uid), job.source_namespace)
    notes = annotations_of(claim) if claim is not None else {}
    return {key: notes[key] for key in (ann.ANN_CLONE_OF, ann.ANN_PREALLOCATION_APPLIED) if key in notes}


def owned_by(job_uid: str) -> dict[str, str]:
    return {ann.LABEL_OWNED_BY_UID: job_uid}


def is_temporary(obj: Object) -> bool:
    return ann.LABEL_OWNED_BY_UID in labels_of(obj)
