"""Reading one DataImportCron's world into the frozen `Observed` that `plan` decides from.

Reads (through the manager's cached client): the desired storage class (the template's, else the
virt-default or default class, as upstream's `GetStorageClassByNameWithVirtFallback`), its
StorageProfile's `dataImportCronSourceFormat` and the snapshot class for imports (the profile's
`snapshotClassForDataImportCron` annotation, its `snapshotClass`, else a VolumeSnapshotClass of the
class's driver, the default one first), the current import's DataVolume, claim and snapshot, the
managed DataSource, every claim and snapshot labelled for the cron, and a claim or snapshot already
named like the next import (upstream adopts those instead of importing again). VolumeSnapshots are
read only where the cluster serves them. Used by `cdi.controllers.dataimportcron.controller`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.naming import DigestError, import_name
from cdi.controllers.dataimportcron.observed import Observed, PollOutcome
from cdi.controllers.datavolume.render import default_storage_class
from cdi.controllers.meta import annotations_of, name_of, namespace_of

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
ANN_DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"


async def get_or_none(cluster: Cluster, api_version: str, kind: str, name: str,
                      namespace: str | None = None) -> Object | None:
    if not name:
        return None
    try:
        return await cluster.get(api_version, kind, name, namespace)
    except NotFound:
        return None


def explicit_storage_class(cron: Object) -> str | None:
    spec = ((cron.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = (spec.get("storage") or {}).get("storageClassName") or (spec.get("pvc") or {}).get("storageClassName")
    return str(name) if name else None


async def desired_storage_class(cluster: Cluster, cron: Object) -> Object | None:
    if name := explicit_storage_class(cron):
        return await get_or_none(cluster, "storage.k8s.io/v1", "StorageClass", name)
    content = (((cron.get("spec") or {}).get("template") or {}).get("spec") or {}).get("contentType") or "kubevirt"
    classes = (await cluster.list("storage.k8s.io/v1", "StorageClass")).items
    return default_storage_class(classes, content == "kubevirt")


async def snapshot_class(cluster: Cluster, storage_class: Object, profile: Object | None) -> str | None:
    if profile is not None:
        chosen = annotations_of(profile).get(ann.ANN_SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON) or \
            (profile.get("status") or {}).get("snapshotClass")
        if chosen:
            return str(chosen)
    if not await cluster.served(SNAPSHOT_API, "VolumeSnapshotClass"):
        return None
    driver = storage_class.get("provisioner")
    matching = [c for c in (await cluster.list(SNAPSHOT_API, "VolumeSnapshotClass")).items if c.get("driver") == driver]
    matching.sort(key=lambda c: (annotations_of(c).get(ANN_DEFAULT_SNAPSHOT_CLASS) != "true", name_of(c)))
    return name_of(matching[0]) if matching else None


def next_import_name(cron: Object, desired: str | None) -> str | None:
    if not desired:
        return None
    try:
        return import_name(str((cron.get("spec") or {}).get("managedDataSource") or ""), desired)
    except DigestError:
        return None


async def observe(cluster: Cluster, cron: Object, now: datetime, poll: PollOutcome | None, zone: tzinfo) -> Observed:
    namespace, name = namespace_of(cron), name_of(cron)
    snapshots_served = await cluster.served(SNAPSHOT_API, "VolumeSnapshot")
    storage_class = await desired_storage_class(cluster, cron)
    class_name = name_of(storage_class) if storage_class is not None else None
    profile = await get_or_none(cluster, CDI_API_VERSION, "StorageProfile", class_name or "")
    source_format = str((profile or {}).get("status", {}).get("dataImportCronSourceFormat") or "pvc")
    vsc = await snapshot_class(cluster, storage_class, profile) if storage_class is not None else None
    imports = (cron.get("status") or {}).get("currentImports") or []
    current = str(imports[0].get("DataVolumeName") or "") if imports else ""

    async def snapshot(snapshot_name: str) -> Object | None:
        if not snapshots_served:
            return None
        return await get_or_none(cluster, SNAPSHOT_API, "VolumeSnapshot", snapshot_name, namespace)

    desired = poll.digest if poll is not None and poll.digest else \
        annotations_of(cron).get(ann.ANN_SOURCE_DESIRED_DIGEST)
    adoptable = None
    if (next_name := next_import_name(cron, desired)) and next_name != current:
        if found := await snapshot(next_name):
            adoptable = {**found, "kind": "VolumeSnapshot"}
        elif found := await get_or_none(cluster, "v1", "PersistentVolumeClaim", next_name, namespace):
            adoptable = {**found, "kind": "PersistentVolumeClaim"}
    selector = {ann.LABEL_DATA_IMPORT_CRON: name}
    return Observed(
        doc=cron, now=now, source_format=source_format, storage_class=class_name, snapshot_class=vsc,
        dv=await get_or_none(cluster, CDI_API_VERSION, "DataVolume", current, namespace),
        pvc=await get_or_none(cluster, "v1", "PersistentVolumeClaim", current, namespace),
        snapshot=await snapshot(current),
        data_source=await get_or_none(cluster, CDI_API_VERSION, "DataSource",
                                      str((cron.get("spec") or {}).get("managedDataSource") or ""), namespace),
        adoptable=adoptable,
        import_pvcs=tuple((await cluster.list("v1", "PersistentVolumeClaim", namespace, selector)).items),
        import_snapshots=tuple((await cluster.list(SNAPSHOT_API, "VolumeSnapshot", namespace, selector)).items
                               if snapshots_served else ()),
        poll=poll, zone=zone)
