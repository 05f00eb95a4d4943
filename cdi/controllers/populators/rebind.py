"""Handing a populated volume from the claim that filled it to the claim that asked for it.

Upstream's `cc.Rebind`: the PersistentVolume bound to the temporary claim (PVC′) gets a `claimRef` naming
the target claim instead; Kubernetes' PV controller (or the embedded binder) then binds the target to
it, and PVC′ is left `Lost`. `handover` decides, purely, from the volume as it is now; `RebindFailed`
is raised when the volume is bound to neither claim, which no retry can mend. The import/upload
populators and the clone populator's `Rebind` phase (`cdi.controllers.clone.phases.rebind_phase`) both
hand volumes over with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from cdi.cluster.protocol import Object
from cdi.controllers.meta import name_of, namespace_of, uid_of


class RebindFailed(Exception):
    """The volume is bound to a claim that is neither PVC′ nor the target: a person must look."""

    reason = "RebindFailed"
    retryable = False


class Handed(Enum):
    """What the volume's claimRef says about the hand-over."""

    NOT_YET = "the volume still belongs to PVC′: patch its claimRef"
    DONE = "the volume already names the target: wait for the binder"


@dataclass(frozen=True)
class ClaimRefPatch:
    """The merge patch that moves the volume to the target claim."""

    volume: str
    patch: dict[str, Any]


def handover(volume: Object, prime: Object, target: Object) -> Handed:
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    if ref.get("uid") == uid_of(target) or (not ref.get("uid") and ref.get("name") == name_of(target)
                                            and ref.get("namespace") == namespace_of(target)):
        return Handed.DONE
    if ref.get("uid") == uid_of(prime):
        return Handed.NOT_YET
    raise RebindFailed(f"PV {name_of(volume)} bound to unexpected claim {ref.get('namespace')}/{ref.get('name')}: "
                       f"could not rebind it to target PVC {name_of(target)}")


def claim_ref_patch(volume: Object, target: Object) -> ClaimRefPatch:
    """Name the target in the volume's claimRef (no resourceVersion: the binder reads the claim afresh)."""
    return ClaimRefPatch(name_of(volume), {"spec": {"claimRef": {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace_of(target),
        "name": name_of(target), "uid": uid_of(target), "resourceVersion": None}}})
