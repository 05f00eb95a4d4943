"""Admission rules for a DataVolume spec: one target, one source, sane sizes, valid source members.

These are the cross-field rules upstream's validating webhook enforces on create (the schema-level
ones — enums, required fields — are enforced by parsing, see `cdi.api.registry`). Used for DataVolumes
and, with a different path prefix, for a DataImportCron's template. Unlike upstream, which stops at
the first problem, independent problems are all reported; a rule that depends on an earlier one
(for example member checks after "Multiple Data volume sources") is skipped.
"""

from __future__ import annotations

from decimal import Decimal

from cdi.api.core import (
    STORAGE_RESOURCE,
    AccessMode,
    PersistentVolumeClaimSpec,
    TypedLocalObjectReference,
    TypedObjectReference,
    VolumeResourceRequirements,
)
from cdi.api.datavolume import DATA_SOURCE_KIND, DataVolume, DataVolumeSpec, StorageSpec
from cdi.api.source_rules import check_member
from cdi.quantity import parse_quantity_decimal

MAX_NAME_LENGTH = 253
MIN_SIZE = 1024 * 1024
MAX_SIZE = Decimal(2**63 - 1)  # Kubernetes quantities of bytes are int64
_SUPPORTED_ACCESS_MODES = ", ".join(f'"{mode.value}"' for mode in sorted(AccessMode, key=str))


def check_datavolume(dv: DataVolume) -> list[str]:
    """Every admission problem of a DataVolume being created."""
    problems = []
    if len(dv.name) > MAX_NAME_LENGTH:
        problems.append(f"metadata.name: Name of data volume cannot be more than {MAX_NAME_LENGTH} characters")
    return problems + check_datavolume_spec(dv.spec, "spec")


def check_datavolume_spec(spec: DataVolumeSpec, path: str) -> list[str]:
    """The spec rules, with field paths under `path` ("spec", or "spec.template.spec" for a cron)."""
    problems = _check_target(spec, path)
    if _externally_populated(spec):
        return problems + _check_external_population(spec, path)
    return problems + _check_source(spec, path)


def is_clone(spec: DataVolumeSpec) -> bool:
    """Whether the DataVolume clones (a PVC, a snapshot, or whatever its DataSource points at)."""
    if spec.source_ref is not None:
        return True
    return spec.source is not None and (spec.source.pvc is not None or spec.source.snapshot is not None)


def _check_target(spec: DataVolumeSpec, path: str) -> list[str]:
    if spec.pvc is not None and spec.storage is not None:
        return [f"{path}: Duplicate storage definition, both target storage and target pvc defined"]
    if spec.pvc is not None:
        return _check_pvc(spec.pvc, f"{path}.pvc")
    if spec.storage is not None:
        # Clones may leave the size out: it is then taken from the source.
        return _check_storage(spec.storage, f"{path}.storage", size_optional=is_clone(spec))
    return [f"{path}: Missing Data volume PVC"]


def _check_pvc(pvc: PersistentVolumeClaimSpec, path: str) -> list[str]:
    problems = _check_size(pvc.resources, path, "PVC", size_optional=False)
    problems += _check_storage_class_name(pvc.storage_class_name, path)
    modes = pvc.access_modes
    if not modes:
        problems.append(f"{path}.accessModes: Required value: at least 1 access mode is required")
    elif len(modes) > 1:
        problems.append(f"{path}.accessModes: PVC multiple accessModes")
    else:
        problems += _check_access_modes(modes, path)
    return problems


def _check_storage(storage: StorageSpec, path: str, size_optional: bool) -> list[str]:
    problems = _check_size(storage.resources, path, "Storage", size_optional)
    problems += _check_storage_class_name(storage.storage_class_name, path)
    return problems + _check_access_modes(storage.access_modes, path)


def _check_access_modes(modes: list[str], path: str) -> list[str]:
    valid = {mode.value for mode in AccessMode}
    return [f'{path}.accessModes: Unsupported value: "{mode}": supported values: {_SUPPORTED_ACCESS_MODES}'
            for mode in modes if mode not in valid]


def _check_size(resources: VolumeResourceRequirements, path: str, label: str, size_optional: bool) -> list[str]:
    size_path = f"{path}.resources.requests.{STORAGE_RESOURCE}"
    size = resources.storage_request
    if size is None:
        return [] if size_optional else [f"{size_path}: {label} size is missing"]
    value = parse_quantity_decimal(size)
    if value <= 0:
        return [f"{size_path}: {label} size can't be equal or less than zero"]
    if value < Decimal(MIN_SIZE):
        return [f"{size_path}: {label} size should be at least 1MiB, got {size}"]
    if value > MAX_SIZE:
        return [f"{size_path}: {label} size {size} is larger than any volume can be (at most 8Ei, 2^63-1 bytes)"]
    return []


def _check_storage_class_name(name: str | None, path: str) -> list[str]:
    if name is not None and len(name) > MAX_NAME_LENGTH:
        return [f"{path}.storageClassName: must be no more than {MAX_NAME_LENGTH} characters"]
    return []


def _claim(spec: DataVolumeSpec) -> PersistentVolumeClaimSpec | StorageSpec | None:
    return spec.pvc if spec.pvc is not None else spec.storage


def _externally_populated(spec: DataVolumeSpec) -> bool:
    claim = _claim(spec)
    return claim is not None and (claim.data_source is not None or claim.data_source_ref is not None)


def _check_external_population(spec: DataVolumeSpec, path: str) -> list[str]:
    """A claim that names its own populator: no CDI source, and upstream's dataSource(Ref) rules."""
    claim, claim_path = (spec.pvc, f"{path}.pvc") if spec.pvc is not None else (spec.storage, f"{path}.storage")
    if claim is None:
        return []
    problems = []
    if spec.source is not None or spec.source_ref is not None:
        problems.append(f"{path}: External population is incompatible with Source and SourceRef")
    for name, ref in (("dataSource", claim.data_source), ("dataSourceRef", claim.data_source_ref)):
        if ref is not None and not ref.api_group and ref.kind != "PersistentVolumeClaim":
            problems.append(f"{claim_path}.{name}.apiGroup: required for kind {ref.kind}")
    ref = claim.data_source_ref
    if ref is not None and ref.namespace:
        problems.append(f"{claim_path}.dataSourceRef.namespace: cross-namespace population is not supported")
    if claim.data_source is not None and ref is not None and not _same_object(claim.data_source, ref):
        problems.append(f"{claim_path}: dataSource and dataSourceRef must refer to the same object")
    return problems


def _same_object(local: TypedLocalObjectReference, ref: TypedObjectReference) -> bool:
    return (local.api_group or "", local.kind, local.name) == (ref.api_group or "", ref.kind, ref.name)


def _check_source(spec: DataVolumeSpec, path: str) -> list[str]:
    if (spec.source is None) == (spec.source_ref is None):
        return [f"{path}: Data volume should have either Source or SourceRef"]
    if spec.source_ref is not None:
        ref, ref_path = spec.source_ref, f"{path}.sourceRef"
        if not ref.kind:
            return [f"{ref_path}.kind: Missing sourceRef kind"]
        if ref.kind != DATA_SOURCE_KIND:
            return [f"{ref_path}.kind: Unsupported sourceRef kind {ref.kind}, "
                    f"currently only {DATA_SOURCE_KIND} is supported"]
        return [] if ref.name else [f"{ref_path}.name: Missing sourceRef name"]
    members = spec.source.members() if spec.source is not None else {}
    if not members:
        return [f"{path}.source: Missing Data volume source"]
    if len(members) > 1:
        return [f"{path}.source: Multiple Data volume sources ({', '.join(members)})"]
    [(name, member)] = members.items()
    return check_member(name, member, spec.content_type, f"{path}.source", f"{path}.contentType")
