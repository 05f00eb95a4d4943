"""What to do for one PersistentVolume: the reclaimer's pure planner.

`plan_volume` follows Kubernetes' PV controller for a volume's phase: Available while unclaimed (or
pre-bound by name to a claim that does not exist yet), Bound while its claim is bound to it, Released
once the claim it was bound to is gone. A released volume with reclaim policy Delete that this
provisioner made is deleted: the PV object is marked deleted, the pool frees its storage, then the
`pycdi.local/volume-protection` finalizer comes off and the PV disappears. Retain (and the deprecated
Recycle) leave it Released for an administrator. Deleting a PV by hand frees its storage too unless
its claim is still bound to it, in which case the PV waits, as Kubernetes' pv-protection makes it.
`cdi.embedded.volumes.reclaimer` observes and applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.embedded.volumes.claim_plan import AVAILABLE, BOUND, Notify
from cdi.embedded.volumes.keys import CSI_DRIVER_NAME
from cdi.embedded.volumes.objects import ClaimView, ReclaimPolicy, VolumeView
from cdi.embedded.volumes.pool import VolumeInfo

RELEASED, FAILED = "Released", "Failed"


@dataclass(frozen=True)
class SetVolumePhase:
    phase: str


@dataclass(frozen=True)
class DeleteVolumeObject:
    pass


@dataclass(frozen=True)
class ReleaseStorage:
    info: VolumeInfo


@dataclass(frozen=True)
class DropFinalizer:
    pass


VolumeAction = SetVolumePhase | DeleteVolumeObject | ReleaseStorage | DropFinalizer | Notify


@dataclass(frozen=True)
class VolumeObservation:
    volume: VolumeView
    claim: ClaimView | None = None  # the claim the volume's claimRef names, if one of that name exists
    owned: bool = False  # the volume's storage is in the reconciler's pool


def plan_volume(observed: VolumeObservation) -> tuple[VolumeAction, ...]:
    volume, claim = observed.volume, observed.claim
    ref = volume.claim_ref
    claim_present = claim is not None and claim.is_claimed_by(ref)
    if volume.deleting:
        if not volume.protected or (claim_present and claim is not None and claim.volume_name == volume.name):
            return ()
        return (*_free_storage(observed), DropFinalizer())
    if ref is None or not ref.uid:
        return () if volume.phase == AVAILABLE else (SetVolumePhase(AVAILABLE),)
    if claim_present:
        assert claim is not None
        bound = claim.volume_name == volume.name and volume.phase != BOUND
        return (SetVolumePhase(BOUND),) if bound else ()
    return _reclaim(observed)


def _reclaim(observed: VolumeObservation) -> tuple[VolumeAction, ...]:
    """The volume's claim is gone."""
    volume = observed.volume
    if volume.phase == FAILED:
        return ()
    released = () if volume.phase == RELEASED else (SetVolumePhase(RELEASED),)
    if volume.reclaim_policy != ReclaimPolicy.DELETE:
        return released
    if not volume.ours:
        return (SetVolumePhase(FAILED), Notify("Warning", "VolumeFailedDelete",
                                               f"Error getting deleter volume plugin for volume \"{volume.name}\": "
                                               f"it was not provisioned by {CSI_DRIVER_NAME}"))
    return (*released, DeleteVolumeObject(), *_free_storage(observed), DropFinalizer())


def _free_storage(observed: VolumeObservation) -> tuple[VolumeAction, ...]:
    volume = observed.volume
    if volume.info is not None and observed.owned:
        return (ReleaseStorage(volume.info),)
    if not volume.ours:
        return ()
    where = volume.info.backing if volume.info is not None else "an unrecorded place"
    return (Notify("Warning", "VolumeFailedDelete", f"the storage of volume {volume.name} is in {where}, which is "
                                                    f"not part of this storage pool; delete it by hand"),)
