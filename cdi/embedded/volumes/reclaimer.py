"""`VolumeReconciler`: keeps each PersistentVolume's phase and frees the storage of released volumes.

Keyed by PV name; woken by the PV itself and by changes to claims (a deleted claim maps to the volume
it was bound to, see `volumes_of_claim`). It observes the PV and the claim its claimRef names, asks
`cdi.embedded.volumes.volume_plan.plan_volume` what to do, and applies that through the `Cluster` and
the `StoragePool`. Its neighbour `cdi.embedded.volumes.provisioner` creates and binds volumes.
"""

from __future__ import annotations

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.claim_plan import Notify, volume_name_for
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.manifests import phase_status, without_finalizer
from cdi.embedded.volumes.objects import parse_claim, parse_volume
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.tracking import EventOnce
from cdi.embedded.volumes.volume_plan import (
    DeleteVolumeObject,
    DropFinalizer,
    ReleaseStorage,
    SetVolumePhase,
    VolumeAction,
    VolumeObservation,
    plan_volume,
)
from cdi.runtime.types import DONE, Key, Result

PV = ("v1", "PersistentVolume")


def volumes_of_claim(obj: Object) -> list[Key]:
    """The volumes a claim change concerns: the one it names and the one provisioned for it."""
    claim = parse_claim(obj)
    names = {name for name in (claim.volume_name, volume_name_for(claim) if claim.uid else "") if name}
    return [Key("", name) for name in sorted(names)]


class VolumeReconciler:
    """Reconciles one PersistentVolume (see the module docstring)."""

    def __init__(self, cluster: Cluster, pool: StoragePool, events: EventOnce) -> None:
        self._cluster = cluster
        self._pool = pool
        self._events = events

    async def reconcile(self, key: Key) -> Result:
        try:
            raw = await self._cluster.get(*PV, key.name)
        except NotFound:
            self._events.forget("PersistentVolume", key)
            return DONE
        observed = await self.observe(raw)
        for action in plan_volume(observed):
            if not await self._apply(raw, action):
                break
        return DONE

    async def observe(self, raw: Object) -> VolumeObservation:
        volume = parse_volume(raw)
        claim = None
        if volume.claim_ref is not None:
            try:
                claim = parse_claim(await self._cluster.get("v1", "PersistentVolumeClaim", volume.claim_ref.name,
                                                            volume.claim_ref.namespace))
            except NotFound:
                claim = None
        owned = volume.info is not None and self._pool.owns(volume.info)
        return VolumeObservation(volume, claim, owned)

    async def _apply(self, raw: Object, action: VolumeAction) -> bool:
        """Apply one action; False when the rest of the plan must wait (a terminal pool error)."""
        name = raw["metadata"]["name"]
        match action:
            case SetVolumePhase(phase):
                await self._cluster.patch_status(*PV, name, phase_status(phase))
            case DeleteVolumeObject():
                try:
                    await self._cluster.delete(*PV, name)
                except NotFound:
                    pass
            case ReleaseStorage(info):
                try:
                    await self._pool.delete_volume(info)
                except VolumeError as e:
                    await self._events.record(raw, "Warning", "VolumeFailedDelete", str(e))
                    if e.retryable:
                        raise
                    return False
            case DropFinalizer():
                try:
                    fresh = await self._cluster.get(*PV, name)
                    await self._cluster.patch(*PV, name, without_finalizer(fresh))
                except NotFound:
                    pass
            case Notify(type_, reason, message):
                await self._events.record(raw, type_, reason, message)
        return True
