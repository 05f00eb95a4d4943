"""The ordered phases of each clone, and the names of the temporary objects they make: pure data.

A plan is chosen by what is cloned (a PersistentVolumeClaim or a VolumeSnapshot) and the recorded
strategy, as upstream's planner does:

    claim    + copy        HostClone → Rebind
    claim    + csi-clone   CSIClone → PrepClaim → Rebind
    claim    + snapshot    Snapshot → SnapshotClone → PrepClaim → Rebind
    snapshot + snapshot    SnapshotClone → PrepClaim → Rebind
    snapshot + copy        SnapshotClone (into a temporary source claim) → PrepClaim → HostClone → Rebind

Every temporary object lives in the source's namespace (a CSI clone and a snapshot restore can only
read from their own namespace), carries `cdi.kubevirt.io/OwnedByUID=<target claim uid>` so one
label query finds them all for clean-up, and is named after the target claim's uid, so that a
restarted controller finds what it made before instead of making it twice.
"""

from __future__ import annotations

from typing import Final

from cdi.contracts.annotations import ClonePhase
from cdi.controllers.clone.strategy import Strategy

CLAIM_SOURCE: Final = "PersistentVolumeClaim"
SNAPSHOT_SOURCE: Final = "VolumeSnapshot"

_PLANS: Final[dict[tuple[str, Strategy], tuple[ClonePhase, ...]]] = {
    (CLAIM_SOURCE, Strategy.COPY): (ClonePhase.HOST_CLONE, ClonePhase.REBIND),
    (CLAIM_SOURCE, Strategy.CSI_CLONE): (ClonePhase.CSI_CLONE, ClonePhase.PREP_CLAIM, ClonePhase.REBIND),
    (CLAIM_SOURCE, Strategy.SNAPSHOT): (ClonePhase.SNAPSHOT, ClonePhase.SNAPSHOT_CLONE, ClonePhase.PREP_CLAIM,
                                        ClonePhase.REBIND),
    (SNAPSHOT_SOURCE, Strategy.SNAPSHOT): (ClonePhase.SNAPSHOT_CLONE, ClonePhase.PREP_CLAIM, ClonePhase.REBIND),
    (SNAPSHOT_SOURCE, Strategy.COPY): (ClonePhase.SNAPSHOT_CLONE, ClonePhase.PREP_CLAIM, ClonePhase.HOST_CLONE,
                                       ClonePhase.REBIND),
}


class NoPlan(ValueError):
    """A source kind and strategy no clone can combine (a CSI clone of a snapshot)."""


def phases_for(source_kind: str, strategy: Strategy) -> tuple[ClonePhase, ...]:
    try:
        return _PLANS[(source_kind, strategy)]
    except KeyError:
        raise NoPlan(f"cannot clone a {source_kind} with strategy {strategy.value}") from None


def tmp_claim_name(target_uid: str) -> str:
    """The claim the data lands in before its volume is handed to the target."""
    return f"tmp-pvc-{target_uid}"


def tmp_source_claim_name(target_uid: str) -> str:
    """For a copy from a snapshot: the claim restored from the snapshot that the copy reads."""
    return f"tmp-source-pvc-{target_uid}"


def tmp_snapshot_name(target_uid: str) -> str:
    return f"tmp-snapshot-{target_uid}"


def clone_source_name(dv_uid: str) -> str:
    """The VolumeCloneSource a DataVolume's target claim names in its dataSourceRef."""
    return f"volume-clone-source-{dv_uid}"
