"""The DataSource kind: a stable, named pointer to the current golden image (a PVC or a snapshot).

DataVolumes reach it through `spec.sourceRef`; DataImportCron updates the one it manages after every
import; the DataSource controller resolves `spec.source` (following at most one DataSource-to-
DataSource hop) into `status.source` and the Ready condition. Admission rules are in
`cdi.api.validation`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition
from cdi.api.sources import PvcSource, SnapshotSource


class DataSourceConditionType(StrEnum):
    """Conditions a DataSource reports."""

    READY = "Ready"


class DataSourceReference(ApiModel):
    """Another DataSource in the same namespace (a chain may be at most one hop long)."""

    namespace: str
    name: str


class DataSourceSource(ApiModel):
    """Exactly one of a PVC, a VolumeSnapshot or another DataSource."""

    pvc: PvcSource | None = None
    snapshot: SnapshotSource | None = None
    data_source: DataSourceReference | None = None


class DataSourceSpec(ApiModel):
    """What the DataSource points at."""

    source: DataSourceSource


class DataSourceStatus(ApiModel):
    """The resolved source (cleared while not Ready) and the Ready condition."""

    source: DataSourceSource = Field(default_factory=DataSourceSource)
    conditions: list[Condition] = Field(default_factory=list)


class DataSource(ApiObject):
    """A named reference to an importable or clonable volume."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "DataSource"
    spec: DataSourceSpec
    status: DataSourceStatus = Field(default_factory=DataSourceStatus)
