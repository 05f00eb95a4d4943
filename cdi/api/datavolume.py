"""The DataVolume kind: a PersistentVolumeClaim plus where its data comes from, and its progress.

The DataVolume controllers read `spec` (source or sourceRef, pvc or storage) and write `status` (phase,
progress, restart count, the Ready/Bound/Running conditions). `DataImportCron.spec.template` embeds a
whole DataVolume. Admission rules (exactly one source, one target, sizes, URL schemes) are in
`cdi.api.datavolume_rules`; the source members themselves are in `cdi.api.sources`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, StrictBool

from cdi.api.core import (
    ClaimVolumeMode,
    LabelSelector,
    PersistentVolumeClaimSpec,
    TypedLocalObjectReference,
    TypedObjectReference,
    VolumeResourceRequirements,
)
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition, Int32
from cdi.api.sources import (
    BlankSource,
    ContentType,
    GcsSource,
    HttpSource,
    ImageioSource,
    PvcSource,
    RegistrySource,
    S3Source,
    SnapshotSource,
    UploadSource,
    VddkSource,
)

DATA_SOURCE_KIND = "DataSource"


class DataVolumePhase(StrEnum):
    """Every phase upstream defines, including the ones no controller sets any more."""

    UNSET = ""
    PENDING = "Pending"
    PVC_BOUND = "PVCBound"
    IMPORT_SCHEDULED = "ImportScheduled"
    IMPORT_IN_PROGRESS = "ImportInProgress"
    CLONE_SCHEDULED = "CloneScheduled"
    CLONE_IN_PROGRESS = "CloneInProgress"
    SNAPSHOT_FOR_SMART_CLONE_IN_PROGRESS = "SnapshotForSmartCloneInProgress"
    CLONE_FROM_SNAPSHOT_SOURCE_IN_PROGRESS = "CloneFromSnapshotSourceInProgress"
    SMART_CLONE_PVC_IN_PROGRESS = "SmartClonePVCInProgress"
    CSI_CLONE_IN_PROGRESS = "CSICloneInProgress"
    EXPANSION_IN_PROGRESS = "ExpansionInProgress"
    NAMESPACE_TRANSFER_IN_PROGRESS = "NamespaceTransferInProgress"
    UPLOAD_SCHEDULED = "UploadScheduled"
    UPLOAD_READY = "UploadReady"
    WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
    PENDING_POPULATION = "PendingPopulation"
    PREP_CLAIM_IN_PROGRESS = "PrepClaimInProgress"
    REBIND_IN_PROGRESS = "RebindInProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"
    PAUSED = "Paused"


class DataVolumeConditionType(StrEnum):
    """The three conditions every DataVolume carries."""

    READY = "Ready"
    BOUND = "Bound"
    RUNNING = "Running"


class DataVolumeSource(ApiModel):
    """Where the data comes from; exactly one member is set."""

    http: HttpSource | None = None
    s3: S3Source | None = None
    gcs: GcsSource | None = None
    registry: RegistrySource | None = None
    pvc: PvcSource | None = None
    upload: UploadSource | None = None
    blank: BlankSource | None = None
    imageio: ImageioSource | None = None
    vddk: VddkSource | None = None
    snapshot: SnapshotSource | None = None

    def members(self) -> dict[str, ApiModel]:
        """The source members that are set, by JSON name (normally exactly one)."""
        fields = type(self).model_fields
        return {name: value for name in fields if isinstance(value := getattr(self, name), ApiModel)}


class DataVolumeSourceRef(ApiModel):
    """An indirect source: a DataSource (namespace defaults to the DataVolume's)."""

    kind: str
    namespace: str | None = None
    name: str


class StorageSpec(ApiModel):
    """A claim spec that CDI completes from the StorageProfile (access modes, volume mode, size)."""

    access_modes: list[str] = Field(default_factory=list)
    selector: LabelSelector | None = None
    resources: VolumeResourceRequirements = Field(default_factory=VolumeResourceRequirements)
    volume_name: str | None = None
    storage_class_name: str | None = None
    volume_mode: ClaimVolumeMode | None = None
    data_source: TypedLocalObjectReference | None = None
    data_source_ref: TypedObjectReference | None = None


class DataVolumeCheckpoint(ApiModel):
    """One stage of a multi-stage (warm) import: the snapshot before and the one taken now."""

    previous: str
    current: str


class DataVolumeSpec(ApiModel):
    """What to populate (source or sourceRef) and what to create (pvc or storage)."""

    source: DataVolumeSource | None = None
    source_ref: DataVolumeSourceRef | None = None
    pvc: PersistentVolumeClaimSpec | None = None
    storage: StorageSpec | None = None
    priority_class_name: str | None = None
    service_account_name: str | None = None
    content_type: ContentType = ContentType.KUBEVIRT
    checkpoints: list[DataVolumeCheckpoint] = Field(default_factory=list)
    final_checkpoint: StrictBool = False
    preallocation: StrictBool | None = None


class DataVolumeStatus(ApiModel):
    """Progress as the DataVolume controllers report it."""

    claim_name: str | None = None
    phase: DataVolumePhase = DataVolumePhase.UNSET
    progress: str | None = None
    restart_count: Int32 = 0
    conditions: list[Condition] = Field(default_factory=list)


class DataVolume(ApiObject):
    """A PersistentVolumeClaim together with the import, clone or upload that fills it."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "DataVolume"
    spec: DataVolumeSpec
    status: DataVolumeStatus = Field(default_factory=DataVolumeStatus)
