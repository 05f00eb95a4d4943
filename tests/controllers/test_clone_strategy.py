"""The clone planner's strategy choice and plans, as tables: every fallback reason, every wait and refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cdi.contracts.annotations import ClonePhase
from cdi.controllers.clone.plans import CLAIM_SOURCE, SNAPSHOT_SOURCE, NoPlan, phases_for
from cdi.controllers.clone.strategy import (
    Chosen,
    ClaimSource,
    ClassFacts,
    Fallback,
    Note,
    Refused,
    SnapshotClassFacts,
    SnapshotSource,
    Strategy,
    StrategyInputs,
    TargetFacts,
    Wait,
    choose_strategy,
    wanted_strategy,
)

GI = 1 << 30
DRIVER = "local.csi.example"
LOCAL = ClassFacts("local", DRIVER, allow_expansion=True)
FIXED = ClassFacts("fixed", DRIVER, allow_expansion=False)
OTHER = ClassFacts("other", "other.csi.example", allow_expansion=True)
SOURCE = ClaimSource("src-ns", "golden", "Filesystem", request=GI, capacity=GI, driver=DRIVER, storage_class="local")
TARGET = TargetFacts("Filesystem", 2 * GI, "local", LOCAL)
DEFAULT_VSC = SnapshotClassFacts("local-snapshots", DRIVER, is_default=True)
SNAP = SnapshotSource("src-ns", "snap", DRIVER, restore_size=GI, volume_mode="Filesystem")


def inputs(**changes: object) -> StrategyInputs:
    base = StrategyInputs(SOURCE, TARGET, snapshot_classes=(DEFAULT_VSC,))
    return replace(base, **changes)  # type: ignore[arg-type]


SELECTED_DEFAULT = Note("Normal", "VolumeSnapshotClassSelected", "Default VolumeSnapshotClass selected")


@pytest.mark.parametrize(("case", "given", "expected"), [
    ("default is snapshot with the driver's default class", inputs(),
     Chosen(Strategy.SNAPSHOT, None, "local-snapshots", (SELECTED_DEFAULT,))),
    ("override wins over the profile", inputs(override="csi-clone", target=replace(TARGET, profile_strategy="copy")),
     Chosen(Strategy.CSI_CLONE)),
    ("the profile's strategy", inputs(target=replace(TARGET, profile_strategy="copy")), Chosen(Strategy.COPY)),
    ("no snapshot class: copy", inputs(snapshot_classes=()), Chosen(Strategy.COPY, Fallback.NO_VOLUME_SNAPSHOT_CLASS)),
    ("only another driver's snapshot class", inputs(snapshot_classes=(SnapshotClassFacts("x", "other"),)),
     Chosen(Strategy.COPY, Fallback.NO_VOLUME_SNAPSHOT_CLASS)),
    ("snapshot across drivers: no common class", inputs(target=replace(TARGET, class_name="other", storage_class=OTHER)),
     Chosen(Strategy.COPY, Fallback.NO_VOLUME_SNAPSHOT_CLASS)),
    ("csi-clone across drivers", inputs(override="csi-clone",
                                        target=replace(TARGET, class_name="other", storage_class=OTHER)),
     Chosen(Strategy.COPY, Fallback.INCOMPATIBLE_PROVISIONERS)),
    ("csi-clone across volume modes", inputs(override="csi-clone", target=replace(TARGET, volume_mode="Block")),
     Chosen(Strategy.COPY, Fallback.INCOMPATIBLE_VOLUME_MODES)),
    ("snapshot across volume modes", inputs(target=replace(TARGET, volume_mode="Block")),
     Chosen(Strategy.COPY, Fallback.INCOMPATIBLE_VOLUME_MODES)),
    ("bigger target on a class that cannot expand", inputs(target=replace(TARGET, class_name="fixed",
                                                                          storage_class=FIXED)),
     Chosen(Strategy.COPY, Fallback.NO_VOLUME_EXPANSION)),
    ("same size on a class that cannot expand", inputs(override="csi-clone",
                                                       source=replace(SOURCE, storage_class="fixed"),
                                                       target=replace(TARGET, request=GI, class_name="fixed",
                                                                      storage_class=FIXED)),
     Chosen(Strategy.CSI_CLONE)),
    ("csi-clone into another class of the driver goes through a snapshot",
     inputs(override="csi-clone", source=replace(SOURCE, storage_class="gold")),
     Chosen(Strategy.SNAPSHOT, None, "local-snapshots", (
         Note("Normal", "CSICloneNotPossible", "a CSI clone needs the source's storage class gold, the target's "
                                               "is local: cloning through a snapshot instead"), SELECTED_DEFAULT))),
    ("target class not decided yet", inputs(target=replace(TARGET, class_name=None, storage_class=None)),
     Wait("Pending", "waiting for the target claim's storage class to be decided")),
    ("target class missing", inputs(target=replace(TARGET, class_name="gone", storage_class=None)),
     Refused("CloneValidationFailed", "target storage class not found: gone")),
    ("unbound source for a fast clone", inputs(override="csi-clone", source=replace(SOURCE, capacity=None)),
     Wait("Pending", "waiting for the source claim src-ns/golden to be bound")),
])
def test_claim_source_strategy(case: str, given: StrategyInputs, expected: object) -> None:
    assert choose_strategy(given) == expected, case


def test_smaller_target_is_refused_unless_permissive() -> None:
    small = inputs(target=replace(TARGET, request=GI // 2))
    refused = choose_strategy(small)
    assert isinstance(refused, Refused)
    assert refused.message == "The clone doesn't meet the validation requirements"
    assert refused.notes == (Note("Warning", "ErrIncompatiblePVC", "target resources requests storage size is smaller "
                                  f"than the source {GI // 2} < {GI}"),)
    assert isinstance(choose_strategy(replace(small, permissive=True)), Chosen)


@pytest.mark.parametrize(("given", "expected"), [
    (inputs(source=SNAP), Chosen(Strategy.SNAPSHOT)),
    (inputs(source=SNAP, override="csi-clone"), Chosen(Strategy.SNAPSHOT)),  # a snapshot ignores the override
    (inputs(source=SNAP, target=replace(TARGET, class_name="other", storage_class=OTHER)),
     Chosen(Strategy.COPY, Fallback.NO_PROVISIONER_MATCH)),
    (inputs(source=SNAP, target=replace(TARGET, class_name="fixed", storage_class=FIXED)),
     Chosen(Strategy.COPY, Fallback.NO_VOLUME_EXPANSION)),
    (inputs(source=SNAP, target=replace(TARGET, volume_mode="Block")),
     Chosen(Strategy.COPY, Fallback.INCOMPATIBLE_VOLUME_MODES)),
    (inputs(source=replace(SNAP, content_driver=None)),
     Wait("Pending", "waiting for the source snapshot src-ns/snap to have content")),
])
def test_snapshot_source_strategy(given: StrategyInputs, expected: object) -> None:
    assert choose_strategy(given) == expected


@pytest.mark.parametrize(("source_class", "target_class", "classes", "expected"), [
    ("gold", "gold", (DEFAULT_VSC, SnapshotClassFacts("gold", DRIVER)),
     ("gold", "VolumeSnapshotClass selected according to StorageProfile")),
    (None, None, (SnapshotClassFacts("b", DRIVER), SnapshotClassFacts("a", DRIVER)),
     ("a", "First VolumeSnapshotClass selected")),
    (None, None, (SnapshotClassFacts("a", DRIVER), DEFAULT_VSC), ("local-snapshots", "Default VolumeSnapshotClass selected")),
    ("gold", "silver", (DEFAULT_VSC,), None),  # the profiles disagree: no compatible class
    ("gold", "gold", (DEFAULT_VSC,), None),  # the class both name does not exist
])
def test_snapshot_class_selection(source_class: str | None, target_class: str | None,
                                  classes: tuple[SnapshotClassFacts, ...], expected: tuple[str, str] | None) -> None:
    chosen = choose_strategy(inputs(source=replace(SOURCE, profile_snapshot_class=source_class),
                                    target=replace(TARGET, profile_snapshot_class=target_class),
                                    snapshot_classes=classes))
    assert isinstance(chosen, Chosen)
    if expected is None:
        assert chosen == Chosen(Strategy.COPY, Fallback.NO_VOLUME_SNAPSHOT_CLASS)
    else:
        assert (chosen.snapshot_class, chosen.notes[0].message) == expected


def test_every_fallback_has_upstreams_message() -> None:
    assert {f.value: f.message for f in Fallback} == {
        "NoVolumeSnapshotClass": "No compatible volumesnapshotclass found",
        "IncompatibleProvisioners": "Provisioners are incompatible",
        "IncompatibleVolumeModes": "The volume modes of source and target are incompatible",
        "NoVolumeExpansion": "No volume expansion is possible",
        "NoProvisionerMatch": "The storageclass provisioner does not match the volumesnapshotcontent driver",
        "NoPopulator": "In tree storage class does not support snapshot/clone",
    }


def test_wanted_strategy_ignores_unknown_words() -> None:
    assert wanted_strategy("rsync", None) == Strategy.SNAPSHOT
    assert wanted_strategy(None, "csi-clone") == Strategy.CSI_CLONE


@pytest.mark.parametrize(("kind", "strategy", "phases"), [
    (CLAIM_SOURCE, Strategy.COPY, ("HostClone", "Rebind")),
    (CLAIM_SOURCE, Strategy.CSI_CLONE, ("CSIClone", "PrepClaim", "Rebind")),
    (CLAIM_SOURCE, Strategy.SNAPSHOT, ("Snapshot", "SnapshotClone", "PrepClaim", "Rebind")),
    (SNAPSHOT_SOURCE, Strategy.SNAPSHOT, ("SnapshotClone", "PrepClaim", "Rebind")),
    (SNAPSHOT_SOURCE, Strategy.COPY, ("SnapshotClone", "PrepClaim", "HostClone", "Rebind")),
])
def test_plans(kind: str, strategy: Strategy, phases: tuple[str, ...]) -> None:
    assert tuple(p.value for p in phases_for(kind, strategy)) == phases
    assert all(isinstance(p, ClonePhase) for p in phases_for(kind, strategy))


def test_no_csi_clone_of_a_snapshot() -> None:
    with pytest.raises(NoPlan, match="cannot clone a VolumeSnapshot with strategy csi-clone"):
        phases_for(SNAPSHOT_SOURCE, Strategy.CSI_CLONE)
