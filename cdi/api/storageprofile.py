"""The StorageProfile kind: CDI's recommended claim properties for one StorageClass (same name).

The StorageProfile controller fills `status` from known provisioners and the admin's `spec`; the
DataVolume controllers read `status.claimPropertySets` to complete a `storage` stanza, and the clone
planner reads `cloneStrategy`/`snapshotClass`. `DataImportCronSourceFormat` also appears in the
DataImportCron status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from cdi.api.core import AccessMode, VolumeMode
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition

MAX_CLAIM_PROPERTY_SETS = 8
MAX_ACCESS_MODES = 4


class CloneStrategy(StrEnum):
    """How a PVC clone is carried out."""

    COPY = "copy"
    SNAPSHOT = "snapshot"
    CSI_CLONE = "csi-clone"


class DataImportCronSourceFormat(StrEnum):
    """What a DataImportCron keeps its imported images as."""

    PVC = "pvc"
    SNAPSHOT = "snapshot"


class StorageProfileConditionType(StrEnum):
    """Conditions a StorageProfile reports."""

    RECOGNIZED = "Recognized"


class ClaimPropertySet(ApiModel):
    """A combination of access modes and volume mode the storage supports."""

    access_modes: Annotated[list[AccessMode], Field(max_length=MAX_ACCESS_MODES)] = Field(
        default_factory=list
    )
    volume_mode: VolumeMode


ClaimPropertySets = Annotated[list[ClaimPropertySet], Field(max_length=MAX_CLAIM_PROPERTY_SETS)]


class StorageProfileSpec(ApiModel):
    """Admin overrides for the StorageClass."""

    clone_strategy: CloneStrategy | None = None
    claim_property_sets: ClaimPropertySets = Field(default_factory=list)
    data_import_cron_source_format: DataImportCronSourceFormat | None = None
    snapshot_class: str | None = None


class StorageProfileStatus(ApiModel):
    """The effective recommendation: spec overrides merged with what CDI knows about the provisioner."""

    storage_class: str | None = None
    provisioner: str | None = None
    clone_strategy: CloneStrategy | None = None
    claim_property_sets: ClaimPropertySets = Field(default_factory=list)
    data_import_cron_source_format: DataImportCronSourceFormat | None = None
    snapshot_class: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class StorageProfile(ApiObject):
    """Claim defaults and clone capabilities for the StorageClass of the same name."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "StorageProfile"
    spec: StorageProfileSpec
    status: StorageProfileStatus = Field(default_factory=StorageProfileStatus)
