"""Volume populator sources: the objects a PVC's `dataSourceRef` names to be filled by CDI.

The DataVolume controllers create one of these per DataVolume when populators are in use, and the
import, upload and clone populators read them. `VolumeImportSource` reuses the DataVolume source
members (import kinds only); admission rules are in `cdi.api.validation`.
"""

from __future__ import annotations

from pydantic import Field, StrictBool

from cdi.api.core import TypedLocalObjectReference
from cdi.api.datavolume import DataVolumeCheckpoint
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject
from cdi.api.sources import (
    BlankSource,
    ContentType,
    GcsSource,
    HttpSource,
    ImageioSource,
    RegistrySource,
    S3Source,
    VddkSource,
)


class ImportSourceType(ApiModel):
    """Exactly one import source."""

    http: HttpSource | None = None
    s3: S3Source | None = None
    registry: RegistrySource | None = None
    gcs: GcsSource | None = None
    blank: BlankSource | None = None
    imageio: ImageioSource | None = None
    vddk: VddkSource | None = None

    def members(self) -> dict[str, ApiModel]:
        """The source members that are set, by JSON name (normally exactly one)."""
        fields = type(self).model_fields
        return {name: value for name in fields if isinstance(value := getattr(self, name), ApiModel)}


class VolumeImportSourceSpec(ApiModel):
    """What to import, and for multi-stage imports the claim and checkpoints."""

    source: ImportSourceType | None = None
    preallocation: StrictBool | None = None
    content_type: ContentType = ContentType.KUBEVIRT
    target_claim: str | None = None
    checkpoints: list[DataVolumeCheckpoint] = Field(default_factory=list)
    final_checkpoint: StrictBool | None = None


class EmptyStatus(ApiModel):
    """Populator sources report nothing; kept so that any status written round-trips."""


class VolumeImportSource(ApiObject):
    """Populate a PVC by importing from an http, s3, gcs, registry, imageio or vddk source, or blank."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "VolumeImportSource"
    spec: VolumeImportSourceSpec
    status: EmptyStatus = Field(default_factory=EmptyStatus)


class VolumeUploadSourceSpec(ApiModel):
    """How uploaded data is treated."""

    content_type: ContentType = ContentType.KUBEVIRT
    preallocation: StrictBool | None = None


class VolumeUploadSource(ApiObject):
    """Populate a PVC with data uploaded through the upload proxy."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "VolumeUploadSource"
    spec: VolumeUploadSourceSpec
    status: EmptyStatus = Field(default_factory=EmptyStatus)


class VolumeCloneSourceSpec(ApiModel):
    """The PVC or VolumeSnapshot to clone (cross-namespace via a PVC annotation, not here)."""

    source: TypedLocalObjectReference
    preallocation: StrictBool | None = None
    priority_class_name: str | None = None


class VolumeCloneSource(ApiObject):
    """Populate a PVC by cloning a PVC or a VolumeSnapshot."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "VolumeCloneSource"
    spec: VolumeCloneSourceSpec
