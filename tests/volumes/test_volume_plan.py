"""The reclaimer's decisions for a PersistentVolume, as tables of observed state → planned actions."""

from __future__ import annotations

from typing import Any

from cdi.embedded.volumes.claim_plan import Notify
from cdi.embedded.volumes.objects import parse_claim, parse_volume
from cdi.embedded.volumes.volume_plan import (
    DeleteVolumeObject,
    DropFinalizer,
    ReleaseStorage,
    SetVolumePhase,
    VolumeObservation,
    plan_volume,
)
from tests.volumes.support import pvc, static_pv

UID = "u-1"
RECORD = {"pycdi.local/pool": "loop", "pycdi.local/backing": "/pool/images/pv.img",
          "pycdi.local/volume-path": "/pool/mounts/pv", "pycdi.local/fs-type": "ext4",
          "pv.kubernetes.io/provisioned-by": "pycdi.local/hostpath"}


def volume(phase: str = "Bound", *, claim_uid: str | None = UID, reclaim: str = "Delete", ours: bool = True,
           deleting: bool = False) -> dict[str, Any]:
    obj = static_pv("pv", "/pool/mounts/pv", reclaim=reclaim)
    obj["metadata"].update(annotations=dict(RECORD) if ours else {},
                           finalizers=["pycdi.local/volume-protection"] if ours else [])
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    if claim_uid is not None:
        obj["spec"]["claimRef"] = {"namespace": "default", "name": "data", "uid": claim_uid}
    obj["status"] = {"phase": phase} if phase else {}
    return obj


def claim(uid: str = UID, volume_name: str = "pv") -> dict[str, Any]:
    obj = pvc("data", volume_name=volume_name or None)
    obj["metadata"]["uid"] = uid
    return obj


def plan(pv: dict[str, Any], pvc_obj: dict[str, Any] | None = None, owned: bool = True) -> tuple[object, ...]:
    return plan_volume(VolumeObservation(parse_volume(pv), parse_claim(pvc_obj) if pvc_obj else None, owned))


def test_phases_follow_the_claim() -> None:
    assert plan(volume("", claim_uid=None)) == (SetVolumePhase("Available"),)
    assert plan(volume("Available", claim_uid=None)) == ()
    assert plan(volume("", claim_uid="")) == (SetVolumePhase("Available"),)  # pre-bound by name only
    assert plan(volume("Available"), claim()) == (SetVolumePhase("Bound"),)
    assert plan(volume("Bound"), claim()) == ()
    assert plan(volume("Available"), claim(volume_name="")) == ()  # the claim is still binding


def test_a_released_delete_volume_is_deleted_with_its_storage() -> None:
    storage = parse_volume(volume()).info
    assert storage is not None
    expected = (SetVolumePhase("Released"), DeleteVolumeObject(), ReleaseStorage(storage), DropFinalizer())
    assert plan(volume()) == expected
    assert plan(volume(), claim(uid="a-new-claim-of-the-same-name")) == expected


def test_retain_keeps_the_released_volume() -> None:
    assert plan(volume(reclaim="Retain")) == (SetVolumePhase("Released"),)
    assert plan(volume("Released", reclaim="Retain")) == ()


def test_a_foreign_volume_with_delete_policy_fails() -> None:
    assert plan(volume(ours=False), owned=False) == (
        SetVolumePhase("Failed"), Notify("Warning", "VolumeFailedDelete", 'Error getting deleter volume plugin for '
                                         'volume "pv": it was not provisioned by local.csi.pycdi.io'))
    assert plan(volume("Failed", ours=False), owned=False) == ()


def test_deleting_a_volume_waits_while_its_claim_is_bound_to_it() -> None:
    assert plan(volume(deleting=True), claim()) == ()
    storage = parse_volume(volume()).info
    assert plan(volume(deleting=True)) == (ReleaseStorage(storage), DropFinalizer())  # type: ignore[arg-type]
    assert plan(volume(deleting=True, ours=False), owned=False) == ()


def test_storage_outside_the_pool_is_not_touched() -> None:
    actions = plan(volume(deleting=True), owned=False)
    assert actions[-1] == DropFinalizer()
    assert isinstance(actions[0], Notify) and "not part of this storage pool" in actions[0].message
