"""CDI's API: typed models of every kind, lossless parsing, admission rules and the generated CRDs.

The bottom layer of the control plane; it imports nothing from the cluster backends, controllers or
data plane. Typical use:

    obj = parse_object(manifest)        # raises ManifestError listing every schema violation
    problems = validate(obj)            # upstream's admission rules; [] means admitted
    manifest == dump_object(obj)        # lossless: unknown fields kept, no defaults added

`KINDS` describes each kind (plural, short names, scope, printer columns); `all_crds()` renders the
CustomResourceDefinitions from the same models.
"""

from cdi.api.cdi import CDI, CDISpec, CDIStatus
from cdi.api.cdiconfig import CDIConfig, CDIConfigSpec, CDIConfigStatus, FilesystemOverhead, ImportProxy
from cdi.api.core import (
    AccessMode,
    ClaimVolumeMode,
    PersistentVolumeClaimSpec,
    ResourceRequirements,
    VolumeMode,
    VolumeResourceRequirements,
)
from cdi.api.crdgen import all_crds, crd_for
from cdi.api.cron import CronError, CronSchedule, parse_cron
from cdi.api.dataimportcron import DataImportCron, DataImportCronSpec, DataImportCronStatus, GarbageCollect
from cdi.api.datasource import DataSource, DataSourceSpec, DataSourceStatus
from cdi.api.datavolume import (
    DataVolume,
    DataVolumeConditionType,
    DataVolumePhase,
    DataVolumeSource,
    DataVolumeSourceRef,
    DataVolumeSpec,
    DataVolumeStatus,
    StorageSpec,
)
from cdi.api.kinds import KINDS, KindInfo, PrinterColumn, Scope, resolve_kind
from cdi.api.meta import ApiModel, ApiObject, Condition, ConditionStatus, ObjectMeta
from cdi.api.objecttransfer import ObjectTransfer
from cdi.api.populators import VolumeCloneSource, VolumeImportSource, VolumeUploadSource
from cdi.api.registry import ManifestError, build_models, dump_object, parse_model, parse_object
from cdi.api.sources import ContentType, PullMethod
from cdi.api.storageprofile import ClaimPropertySet, CloneStrategy, StorageProfile, StorageProfileSpec
from cdi.api.upload import UploadTokenRequest
from cdi.api.validation import validate, validate_manifest, validate_update

__all__ = [
    "CDI",
    "KINDS",
    "AccessMode",
    "ApiModel",
    "ApiObject",
    "CDIConfig",
    "CDIConfigSpec",
    "CDIConfigStatus",
    "CDISpec",
    "CDIStatus",
    "ClaimPropertySet",
    "ClaimVolumeMode",
    "CloneStrategy",
    "Condition",
    "ConditionStatus",
    "ContentType",
    "CronError",
    "CronSchedule",
    "DataImportCron",
    "DataImportCronSpec",
    "DataImportCronStatus",
    "DataSource",
    "DataSourceSpec",
    "DataSourceStatus",
    "DataVolume",
    "DataVolumeConditionType",
    "DataVolumePhase",
    "DataVolumeSource",
    "DataVolumeSourceRef",
    "DataVolumeSpec",
    "DataVolumeStatus",
    "FilesystemOverhead",
    "GarbageCollect",
    "ImportProxy",
    "KindInfo",
    "ManifestError",
    "ObjectMeta",
    "ObjectTransfer",
    "PersistentVolumeClaimSpec",
    "PrinterColumn",
    "PullMethod",
    "ResourceRequirements",
    "Scope",
    "StorageProfile",
    "StorageProfileSpec",
    "StorageSpec",
    "UploadTokenRequest",
    "VolumeCloneSource",
    "VolumeImportSource",
    "VolumeMode",
    "VolumeResourceRequirements",
    "VolumeUploadSource",
    "all_crds",
    "build_models",
    "crd_for",
    "dump_object",
    "parse_cron",
    "parse_model",
    "parse_object",
    "resolve_kind",
    "validate",
    "validate_manifest",
    "validate_update",
]
