"""Observing a claim's PVC or VolumeSnapshot data source: the reads behind `source_plan.plan_copy`.

`ClaimReconciler.observe` (`cdi.embedded.volumes.provisioner`) calls `observe_source` for an unbound
claim whose data source is one the provisioner copies. A PVC source is read with the PV it is bound
to (its capacity, volume mode, driver and where the pool keeps it); a VolumeSnapshot source with the
VolumeSnapshotContent it is bound to (readyToUse, restoreSize, the content's driver, snapshotHandle
and sourceVolumeMode). Nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import replace

from cdi.api.core import VolumeMode
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.objects import ClaimView, parse_claim, parse_volume, pod_claim_names, pod_finished
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.source_plan import PVC_KIND, CopySource, DataSourceRef
from cdi.quantity import QuantityError, parse_quantity

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


async def observe_source(cluster: Cluster, pool: StoragePool, claim: ClaimView) -> CopySource | None:
    """What the claim's copy source is like now; None when it has no such source."""
    ref = claim.data_source
    if ref is None or not ref.copies:
        return None
    if ref.namespace and ref.namespace != claim.namespace:
        return CopySource(ref)  # refused without reading across namespaces
    if ref.kind == PVC_KIND:
        return await _claim_source(cluster, pool, ref, claim.namespace)
    return await _snapshot_source(cluster, ref, claim.namespace)


async def _get(cluster: Cluster, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object | None:
    try:
        return await cluster.get(api_version, kind, name, namespace)
    except NotFound:
        return None


async def _claim_source(cluster: Cluster, pool: StoragePool, ref: DataSourceRef, namespace: str) -> CopySource:
    raw = await _get(cluster, "v1", PVC_KIND, ref.name, namespace)
    if raw is None:
        return CopySource(ref)
    source = parse_claim(raw)
    raw_volume = await _get(cluster, "v1", "PersistentVolume", source.volume_name) if source.volume_name else None
    seen = CopySource(ref, found=True, phase=source.phase, deleting=source.deleting,
                      storage_class=source.storage_class_name)
    if raw_volume is None:
        return seen
    volume = parse_volume(raw_volume)
    if not source.is_claimed_by(volume.claim_ref):
        return seen
    info = volume.info if volume.info is not None and pool.owns(volume.info) else None
    pods = (await cluster.list("v1", "Pod", namespace)).items
    in_use = any(ref.name in pod_claim_names(pod) and not pod_finished(pod) for pod in pods)
    return replace(seen, bound=True, ready=True, size_bytes=volume.capacity_bytes, volume_mode=volume.volume_mode,
                   driver=volume.csi_driver or volume.provisioned_by, volume=info, in_use=in_use)


async def _snapshot_source(cluster: Cluster, ref: DataSourceRef, namespace: str) -> CopySource:
    if not await cluster.served(SNAPSHOT_API, "VolumeSnapshot"):
        return CopySource(ref)
    snapshot = await _get(cluster, SNAPSHOT_API, "VolumeSnapshot", ref.name, namespace)
    if snapshot is None:
        return CopySource(ref)
    status = snapshot.get("status") or {}
    content_name = status.get("boundVolumeSnapshotContentName")
    content = await _get(cluster, SNAPSHOT_API, "VolumeSnapshotContent", str(content_name)) if content_name else None
    spec, content_status = (content or {}).get("spec") or {}, (content or {}).get("status") or {}
    names_back = (spec.get("volumeSnapshotRef") or {}).get("uid") == (snapshot.get("metadata") or {}).get("uid")
    if content is None or not names_back:
        return CopySource(ref, found=True)
    if status.get("readyToUse") is not True:
        return CopySource(ref, found=True, bound=True)
    mode = spec.get("sourceVolumeMode")
    return CopySource(ref, found=True, bound=True, ready=True, size_bytes=_bytes(status.get("restoreSize")),
                      content_name=str(content_name),
                      volume_mode=VolumeMode(mode) if mode in (VolumeMode.BLOCK, VolumeMode.FILESYSTEM) else None,
                      driver=str(spec.get("driver") or ""),
                      snapshot_handle=str(content_status.get("snapshotHandle")
                                          or (spec.get("source") or {}).get("snapshotHandle") or "") or None)


def _bytes(quantity: object) -> int | None:
    if quantity is None:
        return None
    try:
        return parse_quantity(str(quantity))
    except QuantityError:
        return None
