"""Which clone strategy a target gets, and why: the clone planner's pure decision.

Upstream's `ChooseStrategy` (`pkg/controller/clone/planner.go`) in our words. For a PVC source the
wanted strategy is `CDI.spec.cloneStrategyOverride`, else the target StorageProfile's
`status.cloneStrategy`, else `snapshot`; a `snapshot` strategy needs a VolumeSnapshotClass of the
driver both claims share; `snapshot` and `csi-clone` also need one driver on both sides, the same
volume mode, and a target no bigger than the source unless the target's class can expand; a CSI clone
also needs one StorageClass on both sides (external-provisioner's rule), else it goes through a snapshot. For a
VolumeSnapshot source only a snapshot restore or a copy is possible. When the fast path is not
possible the choice falls back to `copy` (host-assisted) with upstream's event reason and message,
which the populator records in `cloneFallbackReason`.

`choose_strategy` reads only the frozen facts below (built by `cdi.controllers.clone.facts` from the
cluster) and returns `Chosen`, `Wait` (nothing wrong, look again later) or `Refused` (the user must
change something). The populator (`cdi.controllers.clone.populator`) applies the result once and
records it on the target claim, so a restart never chooses again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    COPY = "copy"  # host-assisted: a source pod streams the data to an upload server
    SNAPSHOT = "snapshot"  # VolumeSnapshot of the source, then a claim restored from it
    CSI_CLONE = "csi-clone"  # a claim whose dataSourceRef is the source claim


DEFAULT_STRATEGY = Strategy.SNAPSHOT


class Fallback(StrEnum):
    """Event reasons for falling back to a host-assisted copy, with upstream's annotation messages."""

    NO_VOLUME_SNAPSHOT_CLASS = "NoVolumeSnapshotClass"
    INCOMPATIBLE_PROVISIONERS = "IncompatibleProvisioners"
    INCOMPATIBLE_VOLUME_MODES = "IncompatibleVolumeModes"
    NO_VOLUME_EXPANSION = "NoVolumeExpansion"
    NO_PROVISIONER_MATCH = "NoProvisionerMatch"
    NO_POPULATOR = "NoPopulator"

    @property
    def message(self) -> str:
        return _FALLBACK_MESSAGES[self]


_FALLBACK_MESSAGES = {
    Fallback.NO_VOLUME_SNAPSHOT_CLASS: "No compatible volumesnapshotclass found",
    Fallback.INCOMPATIBLE_PROVISIONERS: "Provisioners are incompatible",
    Fallback.INCOMPATIBLE_VOLUME_MODES: "The volume modes of source and target are incompatible",
    Fallback.NO_VOLUME_EXPANSION: "No volume expansion is possible",
    Fallback.NO_PROVISIONER_MATCH: "The storageclass provisioner does not match the volumesnapshotcontent driver",
    Fallback.NO_POPULATOR: "In tree storage class does not support snapshot/clone",
}


@dataclass(frozen=True)
class ClassFacts:
    """A StorageClass as the planner needs it."""

    name: str
    provisioner: str
    allow_expansion: bool = False


@dataclass(frozen=True)
class SnapshotClassFacts:
    name: str
    driver: str
    is_default: bool = False


@dataclass(frozen=True)
class ClaimSource:
    """A source PersistentVolumeClaim."""

    namespace: str
    name: str
    volume_mode: str
    request: int | None  # spec.resources.requests.storage, bytes
    capacity: int | None  # status.capacity.storage, bytes (None while unbound)
    driver: str | None  # the bound PV's spec.csi.driver, else its class's provisioner
    profile_snapshot_class: str | None = None  # the source class's StorageProfile snapshotClass
    storage_class: str | None = None  # the source claim's class


@dataclass(frozen=True)
class SnapshotSource:
    """A source VolumeSnapshot and its bound content."""

    namespace: str
    name: str
    content_driver: str | None  # VolumeSnapshotContent.spec.driver; None while it has no content
    restore_size: int | None
    volume_mode: str | None  # the snapshotted claim's volume mode (VolumeSnapshotContent.spec.sourceVolumeMode)
    snapshot_class: str | None = None


@dataclass(frozen=True)
class TargetFacts:
    volume_mode: str
    request: int  # the target claim's request, bytes
    class_name: str | None  # None: no class decided yet
    storage_class: ClassFacts | None  # None: the named class does not exist
    profile_strategy: str | None = None  # StorageProfile status.cloneStrategy
    profile_snapshot_class: str | None = None


@dataclass(frozen=True)
class StrategyInputs:
    source: ClaimSource | SnapshotSource
    target: TargetFacts
    override: str | None = None  # CDI.spec.cloneStrategyOverride
    snapshot_classes: tuple[SnapshotClassFacts, ...] = ()  # empty also when snapshots are not served
    permissive: bool = False  # cdi.kubevirt.io/permissiveClone: skip the size check


@dataclass(frozen=True)
class Note:
    """An event the choice deserves beside its result."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Chosen:
    strategy: Strategy
    fallback: Fallback | None = None
    snapshot_class: str | None = None
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str


@dataclass(frozen=True)
class Refused:
    reason: str
    message: str
    notes: tuple[Note, ...] = ()


Choice = Chosen | Wait | Refused
VALIDATION_FAILED = "CloneValidationFailed"


def choose_strategy(inputs: StrategyInputs) -> Choice:
    target = inputs.target
    if target.class_name is None:
        return Wait("Pending", "waiting for the target claim's storage class to be decided")
    if target.class_name == "":
        return Refused(VALIDATION_FAILED, "claim has emptyStorageClass, cannot clone")
    if target.storage_class is None:
        return Refused(VALIDATION_FAILED, f"target storage class not found: {target.class_name}")
    if isinstance(inputs.source, SnapshotSource):
        return _for_snapshot(inputs.source, target)
    return _for_claim(inputs, inputs.source, target, target.storage_class)


def wanted_strategy(override: str | None, profile_strategy: str | None) -> Strategy:
    """Override, then the profile, then `snapshot`; unknown words count as unset."""
    for word in (override, profile_strategy):
        if word in tuple(Strategy):
            return Strategy(str(word))
    return DEFAULT_STRATEGY


def _for_claim(inputs: StrategyInputs, source: ClaimSource, target: TargetFacts, target_class: ClassFacts) -> Choice:
    if not inputs.permissive and source.request is not None and source.request > target.request:
        message = ("target resources requests storage size is smaller than the source "
                   f"{target.request} < {source.request}")
        return Refused(VALIDATION_FAILED, "The clone doesn't meet the validation requirements",
                       (Note("Warning", "ErrIncompatiblePVC", message),))
    strategy = wanted_strategy(inputs.override, target.profile_strategy)
    notes: tuple[Note, ...] = ()
    if strategy == Strategy.CSI_CLONE and source.storage_class != target.class_name \
            and source.driver == target_class.provisioner:
        # A CSI clone is provisioned by external-provisioner only within one StorageClass; a snapshot
        # of the same driver restores into any of its classes, and is just as fast.
        strategy = Strategy.SNAPSHOT
        notes = (Note("Normal", "CSICloneNotPossible",
                      f"a CSI clone needs the source's storage class {source.storage_class}, the target's is "
                      f"{target.class_name}: cloning through a snapshot instead"),)
    chosen_class: str | None = None
    if strategy == Strategy.SNAPSHOT:
        picked = pick_snapshot_class(source, target, target_class, inputs.snapshot_classes)
        if picked is None:
            return Chosen(Strategy.COPY, Fallback.NO_VOLUME_SNAPSHOT_CLASS)
        chosen_class, note = picked
        notes = (*notes, note)
    if strategy in (Strategy.SNAPSHOT, Strategy.CSI_CLONE):
        fallback = _advanced_clone_problem(source, target, target_class)
        if fallback is not None:
            return Chosen(Strategy.COPY, fallback)
    if source.capacity is None and strategy != Strategy.COPY:
        return Wait("Pending", f"waiting for the source claim {source.namespace}/{source.name} to be bound")
    return Chosen(strategy, None, chosen_class, notes)


def _advanced_clone_problem(source: ClaimSource, target: TargetFacts, target_class: ClassFacts) -> Fallback | None:
    if source.driver is None or source.driver != target_class.provisioner:
        return Fallback.INCOMPATIBLE_PROVISIONERS
    if source.volume_mode != target.volume_mode:
        return Fallback.INCOMPATIBLE_VOLUME_MODES
    if source.capacity is not None and source.capacity < target.request and not target_class.allow_expansion:
        return Fallback.NO_VOLUME_EXPANSION
    return None


def pick_snapshot_class(source: ClaimSource, target: TargetFacts, target_class: ClassFacts,
                        classes: tuple[SnapshotClassFacts, ...]) -> tuple[str, Note] | None:
    """The VolumeSnapshotClass for snapshotting `source` for `target` (upstream's
    GetCompatibleVolumeSnapshotClass): both claims must share a driver; a snapshot class both
    StorageProfiles name wins, then the driver's default class, then the first by name."""
    if source.driver is None or source.driver != target_class.provisioner:
        return None
    named = source.profile_snapshot_class if source.profile_snapshot_class == target.profile_snapshot_class else None
    if source.profile_snapshot_class and target.profile_snapshot_class and named is None:
        return None
    of_driver = sorted((c for c in classes if c.driver == source.driver), key=lambda c: c.name)
    if named:
        match = next((c for c in of_driver if c.name == named), None)
        return (match.name, _selected("VolumeSnapshotClass selected according to StorageProfile")) if match else None
    default = next((c for c in of_driver if c.is_default), None)
    if default is not None:
        return default.name, _selected("Default VolumeSnapshotClass selected")
    return (of_driver[0].name, _selected("First VolumeSnapshotClass selected")) if of_driver else None


def _selected(message: str) -> Note:
    return Note("Normal", "VolumeSnapshotClassSelected", message)


def _for_snapshot(source: SnapshotSource, target: TargetFacts) -> Choice:
    assert target.storage_class is not None
    if source.content_driver is None:
        return Wait("Pending", f"waiting for the source snapshot {source.namespace}/{source.name} to have content")
    if target.storage_class.provisioner != source.content_driver:
        return Chosen(Strategy.COPY, Fallback.NO_PROVISIONER_MATCH)
    if (source.restore_size is not None and source.restore_size < target.request
            and not target.storage_class.allow_expansion):
        return Chosen(Strategy.COPY, Fallback.NO_VOLUME_EXPANSION)
    if source.volume_mode is not None and source.volume_mode != target.volume_mode:
        return Chosen(Strategy.COPY, Fallback.INCOMPATIBLE_VOLUME_MODES)
    return Chosen(Strategy.SNAPSHOT)
