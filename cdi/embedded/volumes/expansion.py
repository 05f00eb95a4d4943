"""Expanding a bound claim's volume when its request grows: the provisioner's pure expansion planner.

In Kubernetes two components share this: the CSI external-resizer sees a bound claim whose
`spec.resources.requests.storage` exceeds its PV's capacity, sets the claim's `Resizing` condition,
calls the driver's ControllerExpandVolume, records the new capacity on the PV and, when the node must
finish the job, swaps the condition for `FileSystemResizePending`; kubelet then grows the filesystem
(NodeExpandVolume), sets the claim's `status.capacity` and drops the conditions. `plan_expansion`
plans the same steps for the embedded provisioner, which plays both parts
(`cdi.embedded.volumes.provisioner` applies them, the pool does the growing), and picks up after a
crash from whatever the objects show: a PV already grown but a claim still at the old capacity needs
only the node's part. Whether a claim may grow at all (its class's `allowVolumeExpansion`, never
shrinking) is admission's to refuse; a grown request that got past it anyway is left alone with a
Warning, as the resizer would. `cdi.embedded.volumes.claim_plan` calls this once a claim is bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.objects import ClaimView, StorageClassView, VolumeView
from cdi.embedded.volumes.pool import VolumeInfo, round_up_to_mib
from cdi.quantity import format_quantity

RESIZING: Final = "Resizing"
FS_RESIZE_PENDING: Final = "FileSystemResizePending"
RESIZE_CONDITIONS: Final = (RESIZING, FS_RESIZE_PENDING)
FS_RESIZE_PENDING_MESSAGE: Final = ("Waiting for user to (re-)start a pod to finish file system resize of volume "
                                    "on node.")


@dataclass(frozen=True)
class SetResizeCondition:
    type: str  # RESIZING or FS_RESIZE_PENDING; replaces the other
    message: str = ""


@dataclass(frozen=True)
class ExpandVolume:
    info: VolumeInfo  # as the PV records it
    size_bytes: int  # grow the storage to this, then record it as the PV's capacity


@dataclass(frozen=True)
class ExpandFilesystem:
    info: VolumeInfo  # with the capacity the filesystem must offer
    in_use: bool = False  # a pod uses the volume: it must stay mounted


@dataclass(frozen=True)
class FinishResize:
    capacity: str  # the claim's new status.capacity; the resize conditions go
    access_modes: tuple[str, ...]


@dataclass(frozen=True)
class ResizeEvent:
    type: str
    reason: str
    message: str


ExpansionAction = SetResizeCondition | ExpandVolume | ExpandFilesystem | FinishResize | ResizeEvent


def plan_expansion(claim: ClaimView, volume: VolumeView, storage_class: StorageClassView | None, *,
                   in_use: bool = False) -> tuple[ExpansionAction, ...] | None:
    """What expanding `volume` for its bound `claim` takes; None when there is nothing to expand (the
    caller then just keeps the claim's status in step with the volume)."""
    if not volume.ours or volume.info is None or claim.request_bytes is None:
        return None
    wanted = round_up_to_mib(claim.request_bytes)
    if wanted > volume.capacity_bytes:
        if storage_class is None or not storage_class.allow_volume_expansion:
            return (ResizeEvent("Warning", "VolumeResizeFailed",
                                f"cannot grow volume {volume.name} to {format_quantity(wanted)}: StorageClass "
                                f'"{volume.storage_class_name}" does not allow volume expansion'),)
        info = replace(volume.info, size_bytes=volume.capacity_bytes)
        return (*_controller_part(claim, volume, info, wanted), *_node_part(claim, volume, info, wanted, in_use))
    grown_on_node = (claim.status_capacity_bytes or 0) < volume.capacity_bytes and claim.status_capacity is not None
    if grown_on_node or any(kind in RESIZE_CONDITIONS for kind in claim.conditions):
        return _node_part(claim, volume, replace(volume.info, size_bytes=volume.capacity_bytes),
                          volume.capacity_bytes, in_use)
    return None


def _controller_part(claim: ClaimView, volume: VolumeView, info: VolumeInfo,
                     wanted: int) -> tuple[ExpansionAction, ...]:
    mark = () if RESIZING in claim.conditions else (SetResizeCondition(RESIZING),)
    return (*mark, ResizeEvent("Normal", RESIZING, f"External resizer is resizing volume {volume.name} "
                                                   f"to {format_quantity(wanted)}"),
            ExpandVolume(info, wanted),
            ResizeEvent("Normal", "VolumeResizeSuccessful", f"Resize volume {volume.name} to "
                                                            f"{format_quantity(wanted)} succeeded"))


def _node_part(claim: ClaimView, volume: VolumeView, info: VolumeInfo, capacity: int,
               in_use: bool) -> tuple[ExpansionAction, ...]:
    finish = FinishResize(format_quantity(capacity), volume.access_modes)
    if volume.volume_mode == VolumeMode.BLOCK:
        return (finish,)
    pending = FS_RESIZE_PENDING in claim.conditions and RESIZING not in claim.conditions
    mark = () if pending else (SetResizeCondition(FS_RESIZE_PENDING, FS_RESIZE_PENDING_MESSAGE),)
    return (*mark,
            ExpandFilesystem(replace(info, size_bytes=capacity), in_use),
            ResizeEvent("Normal", "FileSystemResizeSuccessful",
                        f"MountVolume.NodeExpandVolume succeeded for volume {volume.name} "
                        f"({format_quantity(capacity)})"),
            finish)
