"""Typed, frozen views of the StorageClasses, PersistentVolumeClaims and PersistentVolumes the
provisioner reads: the edge where raw dicts from the `Cluster` are parsed once.

The planners (`claim_plan`, `volume_plan`) decide from these views only; the reconcilers build them
from what they read and keep the raw objects for writing. Defaults are Kubernetes': binding mode
Immediate, reclaim policy Delete, volume mode Filesystem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from cdi.api.core import VolumeMode
from cdi.cluster.protocol import Object
from cdi.embedded.volumes.keys import (
    ANN_BETA_STORAGE_CLASS,
    ANN_BIND_COMPLETED,
    ANN_DEFAULT_STORAGE_CLASS,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    FINALIZER_VOLUME_PROTECTION,
    OUR_PROVISIONERS,
    PARAM_FS_TYPE,
    PARAM_FS_TYPE_LEGACY,
)
from cdi.embedded.volumes.pool import VolumeInfo, volume_info_from_annotations
from cdi.embedded.volumes.source_plan import DataSourceRef
from cdi.quantity import QuantityError, parse_quantity

E = TypeVar("E", bound=StrEnum)


class BindingMode(StrEnum):
    IMMEDIATE = "Immediate"
    WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


class ReclaimPolicy(StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"
    RECYCLE = "Recycle"  # deprecated upstream; kept like Retain here


@dataclass(frozen=True)
class StorageClassView:
    name: str
    provisioner: str
    binding_mode: BindingMode
    reclaim_policy: ReclaimPolicy
    is_default: bool
    created: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    allow_volume_expansion: bool = False

    @property
    def fs_type(self) -> str | None:
        """The filesystem the class asks for (the CSI parameter, or the in-tree `fsType`)."""
        return self.parameters.get(PARAM_FS_TYPE) or self.parameters.get(PARAM_FS_TYPE_LEGACY) or None


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str  # "" when an administrator pre-bound the volume by name only


@dataclass(frozen=True)
class ClaimView:
    namespace: str
    name: str
    uid: str
    storage_class_name: str | None  # None: not set (the default class applies); "": explicitly none
    volume_name: str
    volume_mode: VolumeMode
    access_modes: tuple[str, ...]
    request_bytes: int | None  # None when missing or not a quantity
    request_text: str
    phase: str  # "" until someone sets it
    status_capacity: str | None
    status_access_modes: tuple[str, ...]
    selected_node: str | None
    bind_completed: bool
    data_source_kind: str | None  # the kind named by dataSourceRef (or dataSource)
    deleting: bool
    conditions: tuple[str, ...] = ()  # the types of status.conditions (Resizing, FileSystemResizePending…)
    data_source: DataSourceRef | None = None  # dataSourceRef (or dataSource), whole

    @property
    def status_capacity_bytes(self) -> int | None:
        return _bytes(self.status_capacity)

    def is_claimed_by(self, ref: ClaimRef | None) -> bool:
        """Whether a volume's claimRef names this claim (a uid-less pre-binding counts)."""
        return (ref is not None and ref.namespace == self.namespace and ref.name == self.name
                and ref.uid in ("", self.uid))


@dataclass(frozen=True)
class VolumeView:
    name: str
    phase: str
    claim_ref: ClaimRef | None
    capacity: str
    capacity_bytes: int
    storage_class_name: str
    volume_mode: VolumeMode
    access_modes: tuple[str, ...]
    reclaim_policy: ReclaimPolicy
    provisioned_by: str
    protected: bool  # carries FINALIZER_VOLUME_PROTECTION
    deleting: bool
    resource_version: str
    info: VolumeInfo | None  # where the pool keeps it, for volumes this provisioner made
    csi_driver: str = ""  # spec.csi.driver

    @property
    def ours(self) -> bool:
        """Whether this provisioner (under its CSI driver name or its earlier name) made the volume."""
        return self.provisioned_by in OUR_PROVISIONERS


def parse_storage_class(obj: Object) -> StorageClassView:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    parameters = obj.get("parameters") or {}
    return StorageClassView(
        name=str(meta.get("name", "")), provisioner=str(obj.get("provisioner") or ""),
        binding_mode=_enum(BindingMode, obj.get("volumeBindingMode"), BindingMode.IMMEDIATE),
        reclaim_policy=_enum(ReclaimPolicy, obj.get("reclaimPolicy"), ReclaimPolicy.DELETE),
        is_default=annotations.get(ANN_DEFAULT_STORAGE_CLASS) == "true",
        created=str(meta.get("creationTimestamp") or ""),
        parameters={str(key): str(value) for key, value in parameters.items()},
        allow_volume_expansion=obj.get("allowVolumeExpansion") is True)


def parse_claim(obj: Object) -> ClaimView:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    class_name = annotations.get(ANN_BETA_STORAGE_CLASS, spec.get("storageClassName"))
    return ClaimView(
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name", "")), uid=str(meta.get("uid") or ""),
        storage_class_name=None if class_name is None else str(class_name),
        volume_name=str(spec.get("volumeName") or ""),
        volume_mode=_enum(VolumeMode, spec.get("volumeMode"), VolumeMode.FILESYSTEM),
        access_modes=tuple(spec.get("accessModes") or ()), request_bytes=_bytes(request),
        request_text="" if request is None else str(request), phase=str(status.get("phase") or ""),
        status_capacity=(status.get("capacity") or {}).get("storage"),
        status_access_modes=tuple(status.get("accessModes") or ()),
        selected_node=annotations.get(ANN_SELECTED_NODE) or None,
        bind_completed=annotations.get(ANN_BIND_COMPLETED) == "yes",
        data_source_kind=str(source["kind"]) if source.get("kind") else None,
        deleting=bool(meta.get("deletionTimestamp")),
        conditions=tuple(str(condition.get("type")) for condition in status.get("conditions") or ()
                         if isinstance(condition, dict)),
        data_source=DataSourceRef(str(source.get("apiGroup") or ""), str(source["kind"]), str(source.get("name") or ""),
                                  str(source.get("namespace") or "") or None) if source.get("kind") else None)


def parse_volume(obj: Object) -> VolumeView:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    name = str(meta.get("name", ""))
    capacity = str((spec.get("capacity") or {}).get("storage") or "0")
    mode = _enum(VolumeMode, spec.get("volumeMode"), VolumeMode.FILESYSTEM)
    ref = spec.get("claimRef")
    return VolumeView(
        name=name, phase=str(status.get("phase") or ""),
        claim_ref=ClaimRef(str(ref.get("namespace") or ""), str(ref.get("name") or ""), str(ref.get("uid") or ""))
        if ref else None,
        capacity=capacity, capacity_bytes=_bytes(capacity) or 0,
        storage_class_name=str(spec.get("storageClassName") or ""), volume_mode=mode,
        access_modes=tuple(spec.get("accessModes") or ()),
        reclaim_policy=_enum(ReclaimPolicy, spec.get("persistentVolumeReclaimPolicy"), ReclaimPolicy.RETAIN),
        provisioned_by=str(annotations.get(ANN_PROVISIONED_BY) or ""),
        protected=FINALIZER_VOLUME_PROTECTION in (meta.get("finalizers") or ()),
        deleting=bool(meta.get("deletionTimestamp")), resource_version=str(meta.get("resourceVersion") or ""),
        info=volume_info_from_annotations(name, mode, _bytes(capacity) or 0, annotations),
        csi_driver=str((spec.get("csi") or {}).get("driver") or ""))


def pod_claim_names(obj: Object) -> tuple[str, ...]:
    """The claims a pod's volumes name (`persistentVolumeClaim.claimName`, in its own namespace)."""
    volumes = (obj.get("spec") or {}).get("volumes") or ()
    return tuple(str(source["claimName"]) for volume in volumes
                 if isinstance(volume, dict) and isinstance(source := volume.get("persistentVolumeClaim"), dict)
                 and source.get("claimName"))


def pod_finished(obj: Object) -> bool:
    """Succeeded or Failed: the pod's containers will not run again, so its volumes are free."""
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _enum(kind: type[E], value: Any, default: E) -> E:
    try:
        return kind(value) if value else default
    except ValueError:
        return default


def _bytes(quantity: Any) -> int | None:
    if quantity is None or isinstance(quantity, bool):
        return None
    try:
        return parse_quantity(quantity if isinstance(quantity, int) else str(quantity))
    except QuantityError:
        return None
