"""Reading what the clone planner decides from: the observe step of strategy choice.

`gather_inputs` reads the target claim's StorageClass and StorageProfile, the CDI resource's
`cloneStrategyOverride`, the VolumeSnapshotClasses (none when the cluster does not serve
`snapshot.storage.k8s.io`) and the source (a claim and its bound PV's CSI driver, or a snapshot
and its bound content) into the frozen facts of `cdi.controllers.clone.strategy`. Parsing raw
objects into those facts happens here and nowhere else; the `*_facts` functions are pure.
"""

from __future__ import annotations

from typing import Any, Final

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import ANN_PERMISSIVE_CLONE
from cdi.controllers.activecdi import active_cdi_of
from cdi.controllers.clone.strategy import (
    ClaimSource,
    ClassFacts,
    SnapshotClassFacts,
    SnapshotSource,
    StrategyInputs,
    TargetFacts,
)
from cdi.controllers.meta import annotations_of, name_of, namespace_of, storage_request
from cdi.quantity import parse_quantity

SNAPSHOT_API: Final = "snapshot.storage.k8s.io/v1"
SNAPSHOT_GROUP: Final = "snapshot.storage.k8s.io"
ANN_DEFAULT_SNAPSHOT_CLASS: Final = "snapshot.storage.kubernetes.io/is-default-class"


async def get_or_none(cluster: Cluster, api_version: str, kind: str, name: str,
                      namespace: str | None = None) -> Object | None:
    try:
        return await cluster.get(api_version, kind, name, namespace)
    except NotFound:
        return None


def quantity_or_none(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def capacity_of(claim: Object) -> int | None:
    """A claim's `status.capacity.storage` in bytes; None while unbound."""
    return quantity_or_none(((claim.get("status") or {}).get("capacity") or {}).get("storage"))


def volume_mode_of(spec: dict[str, Any] | None) -> str:
    return str((spec or {}).get("volumeMode") or "Filesystem")


def class_facts(storage_class: Object) -> ClassFacts:
    return ClassFacts(name_of(storage_class), str(storage_class.get("provisioner") or ""),
                      bool(storage_class.get("allowVolumeExpansion")))


def snapshot_class_facts(snapshot_class: Object) -> SnapshotClassFacts:
    return SnapshotClassFacts(name_of(snapshot_class), str(snapshot_class.get("driver") or ""),
                              annotations_of(snapshot_class).get(ANN_DEFAULT_SNAPSHOT_CLASS) == "true")


def claim_facts(claim: Object, volume: Object | None, storage_class: Object | None,
                profile: Object | None) -> ClaimSource:
    """A source claim: its driver is the bound PV's CSI driver, else its class's provisioner."""
    spec = claim.get("spec") or {}
    driver = ((volume or {}).get("spec") or {}).get("csi", {}).get("driver") if volume else None
    if not driver and storage_class is not None:
        driver = storage_class.get("provisioner")
    return ClaimSource(namespace_of(claim), name_of(claim), volume_mode_of(spec), storage_request(spec),
                       capacity_of(claim), str(driver) if driver else None, profile_snapshot_class(profile),
                       spec.get("storageClassName"))


def snapshot_facts(snapshot: Object, content: Object | None) -> SnapshotSource:
    status = snapshot.get("status") or {}
    content_spec = (content or {}).get("spec") or {}
    return SnapshotSource(namespace_of(snapshot), name_of(snapshot),
                          str(content_spec["driver"]) if content_spec.get("driver") else None,
                          quantity_or_none(status.get("restoreSize")),
                          content_spec.get("sourceVolumeMode"),
                          (snapshot.get("spec") or {}).get("volumeSnapshotClassName"))


def profile_snapshot_class(profile: Object | None) -> str | None:
    if profile is None:
        return None
    value = (profile.get("status") or {}).get("snapshotClass") or (profile.get("spec") or {}).get("snapshotClass")
    return str(value) if value else None


def target_facts(target: Object, storage_class: Object | None, profile: Object | None) -> TargetFacts:
    spec = target.get("spec") or {}
    class_name = spec.get("storageClassName")
    strategy = ((profile or {}).get("status") or {}).get("cloneStrategy")
    return TargetFacts(volume_mode_of(spec), storage_request(spec) or 0, class_name,
                       class_facts(storage_class) if storage_class is not None else None,
                       str(strategy) if strategy else None, profile_snapshot_class(profile))


async def snapshot_classes(cluster: Cluster) -> tuple[SnapshotClassFacts, ...]:
    if not await cluster.served(SNAPSHOT_API, "VolumeSnapshotClass"):
        return ()
    found = (await cluster.list(SNAPSHOT_API, "VolumeSnapshotClass")).items
    return tuple(snapshot_class_facts(item) for item in found)


async def clone_strategy_override(cluster: Cluster) -> str | None:
    """The active CDI resource's `cloneStrategyOverride` (upstream's planner reads `GetActiveCDI` too)."""
    value = ((await active_cdi_of(cluster) or {}).get("spec") or {}).get("cloneStrategyOverride")
    return str(value) if value else None


async def source_claim_facts(cluster: Cluster, claim: Object) -> ClaimSource:
    volume_name = (claim.get("spec") or {}).get("volumeName")
    volume = await get_or_none(cluster, "v1", "PersistentVolume", volume_name) if volume_name else None
    class_name = (claim.get("spec") or {}).get("storageClassName")
    storage_class = await get_or_none(cluster, "storage.k8s.io/v1", "StorageClass", class_name) if class_name else None
    profile = await get_or_none(cluster, CDI_API_VERSION, "StorageProfile", class_name) if class_name else None
    return claim_facts(claim, volume, storage_class, profile)


async def source_snapshot_facts(cluster: Cluster, snapshot: Object) -> SnapshotSource:
    content_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName")
    content = await get_or_none(cluster, SNAPSHOT_API, "VolumeSnapshotContent", content_name) if content_name else None
    return snapshot_facts(snapshot, content)


async def gather_inputs(cluster: Cluster, target: Object, source: Object, source_kind: str) -> StrategyInputs:
    """Everything `choose_strategy` needs to clone `source` (a claim or a snapshot) into `target`."""
    class_name = (target.get("spec") or {}).get("storageClassName")
    storage_class = await get_or_none(cluster, "storage.k8s.io/v1", "StorageClass", class_name) if class_name else None
    profile = await get_or_none(cluster, CDI_API_VERSION, "StorageProfile", class_name) if class_name else None
    facts: ClaimSource | SnapshotSource
    if source_kind == "VolumeSnapshot":
        facts = await source_snapshot_facts(cluster, source)
    else:
        facts = await source_claim_facts(cluster, source)
    return StrategyInputs(facts, target_facts(target, storage_class, profile),
                          override=await clone_strategy_override(cluster),
                          snapshot_classes=await snapshot_classes(cluster),
                          permissive=annotations_of(target).get(ANN_PERMISSIVE_CLONE) == "true")
