"""Admission validation: upstream's webhook rules, as pure functions returning every problem found.

The contract: `validate(obj)` returns a list of messages, each "<field path>: <what is wrong>"; an
empty list means the object would be admitted. `validate_manifest(doc)` does the whole admission
check for a raw manifest — the schema (what the CRD enforces, reported by `cdi.api.registry`) and
then these rules. `validate_update(old, new)` adds the immutability rules for updates. Nothing here
raises for an invalid object; callers (the embedded API server, `cdi create`, tests) decide what to
do with the messages. DataVolume spec rules live in `cdi.api.datavolume_rules`, per-source rules in
`cdi.api.source_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdi.api.cron import CronError, parse_cron
from cdi.api.dataimportcron import DataImportCron
from cdi.api.datasource import DataSource
from cdi.api.datavolume import DataVolume
from cdi.api.datavolume_rules import check_datavolume, check_datavolume_spec
from cdi.api.meta import ApiObject
from cdi.api.objecttransfer import ObjectTransfer
from cdi.api.populators import VolumeImportSource, VolumeUploadSource
from cdi.api.registry import ManifestError, parse_object
from cdi.api.source_rules import check_member

MAX_CRON_NAME_LENGTH = 63
MAX_POPULATOR_NAME_LENGTH = 63
# Upstream: registry or pvc. Beyond upstream, HTTP(S) and S3 crons poll ETag/Last-Modified/versionId.
CRON_TEMPLATE_SOURCES = ("registry", "pvc", "http", "s3")
TRANSFERABLE_KINDS = ("DataVolume", "PersistentVolumeClaim")

# Kinds whose spec may not change after creation.
_ImmutableSpec = DataVolume | DataImportCron | VolumeImportSource | VolumeUploadSource | ObjectTransfer


def validate(obj: ApiObject) -> list[str]:
    """Every admission problem of `obj` being created; empty when it would be admitted."""
    if isinstance(obj, DataVolume):
        return check_datavolume(obj)
    if isinstance(obj, DataImportCron):
        return _check_data_import_cron(obj)
    if isinstance(obj, DataSource):
        return _check_data_source(obj)
    if isinstance(obj, VolumeImportSource):
        return _check_volume_import_source(obj)
    if isinstance(obj, VolumeUploadSource):
        return _check_name_length(obj.name, MAX_POPULATOR_NAME_LENGTH)
    if isinstance(obj, ObjectTransfer):
        return _check_object_transfer(obj)
    return []


def validate_manifest(doc: Mapping[str, Any]) -> list[str]:
    """Schema problems of a raw manifest, or, if it fits the schema, its admission problems."""
    try:
        obj = parse_object(doc)
    except ManifestError as e:
        return e.messages
    return validate(obj)


def validate_update(old: ApiObject, new: ApiObject) -> list[str]:
    """Problems of replacing `old` by `new`: the creation rules do not apply, immutability does."""
    if type(old) is not type(new):
        return [f"kind: cannot change {old.kind} into {new.kind}"]
    if not isinstance(old, _ImmutableSpec) or not isinstance(new, _ImmutableSpec):
        return []
    # Multi-stage imports advance by adding checkpoints; nothing else may change.
    exempt = {"checkpoints", "final_checkpoint"} if _is_multi_stage(new) else set()
    if old.spec.model_dump(exclude=exempt) != new.spec.model_dump(exclude=exempt):
        return [f"spec: Cannot update {new.kind} Spec"]
    return []


def _is_multi_stage(obj: ApiObject) -> bool:
    """Warm imports (vddk or imageio with checkpoints) may update their checkpoints."""
    if isinstance(obj, DataVolume | VolumeImportSource) and obj.spec.checkpoints and obj.spec.source:
        return obj.spec.source.vddk is not None or obj.spec.source.imageio is not None
    return False


def _check_data_import_cron(obj: DataImportCron) -> list[str]:
    spec, template = obj.spec, obj.spec.template.spec
    problems = _check_name_length(obj.name, MAX_CRON_NAME_LENGTH)
    source_names = list(template.source.members()) if template.source is not None else []
    if not set(source_names) & set(CRON_TEMPLATE_SOURCES):
        problems.append("spec.template.spec.source: Missing registry, pvc, http or s3 source "
                        "(a DataImportCron imports from a registry, a PVC, an HTTP(S) URL or an S3 object)")
    unsettable = [name for name, is_set in (
        ("sourceRef", template.source_ref is not None),
        ("contentType", "content_type" in template.model_fields_set),
        ("checkpoints", bool(template.checkpoints)),
        ("finalCheckpoint", template.final_checkpoint),
    ) if is_set]
    if unsettable:
        problems.append(f"spec.template.spec: Unsettable fields: {', '.join(unsettable)}")
    elif source_names:
        problems += check_datavolume_spec(template, "spec.template.spec")
    if spec.schedule:
        try:
            parse_cron(spec.schedule)
        except CronError as e:
            problems.append(f"spec.schedule: Illegal cron schedule {spec.schedule!r}: {e}")
    if not spec.managed_data_source:
        problems.append("spec.managedDataSource: Illegal ManagedDataSource value (it must name a DataSource)")
    return problems


def _check_data_source(obj: DataSource) -> list[str]:
    ref = obj.spec.source.data_source
    if ref is not None and ref.name == obj.name and (ref.namespace or "") == obj.namespace:
        return ["spec.source.dataSource: DataSource cannot point to itself"]
    return []


def _check_volume_import_source(obj: VolumeImportSource) -> list[str]:
    problems = _check_name_length(obj.name, MAX_POPULATOR_NAME_LENGTH)
    spec = obj.spec
    members = spec.source.members() if spec.source is not None else {}
    if not members:
        return [*problems, "spec.source: Missing VolumeImport source"]
    if len(members) > 1:
        return [*problems, f"spec.source: Multiple VolumeImport sources ({', '.join(members)})"]
    if _is_multi_stage(obj) and not spec.target_claim:
        problems.append("spec.targetClaim: Unable to do multi-stage import without specifying a target claim")
    [(name, member)] = members.items()
    return problems + check_member(name, member, spec.content_type, "spec.source", "spec.contentType")


def _check_object_transfer(obj: ObjectTransfer) -> list[str]:
    """Whether the target already exists needs the cluster; the embedded API server checks that."""
    spec, problems = obj.spec, []
    if spec.target.namespace is None and spec.target.name is None:
        problems.append("spec.target: Target namespace and/or target name must be supplied")
    if spec.source.kind not in TRANSFERABLE_KINDS:
        problems.append(f"spec.source.kind: Unsupported kind {spec.source.kind!r} "
                        f"(use {' or '.join(TRANSFERABLE_KINDS)})")
    return problems


def _check_name_length(name: str, limit: int) -> list[str]:
    if len(name) > limit:
        return [f"metadata.name: Name cannot be longer than {limit} characters"]
    return []
