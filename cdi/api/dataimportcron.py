"""The DataImportCron kind: poll a registry (or watch a PVC) on a schedule and keep golden images fresh.

The DataImportCron controller imports each new digest through a DataVolume made from `spec.template`,
points the managed DataSource at the newest import and garbage-collects old ones down to
`importsToKeep`. Admission rules (cron syntax, allowed template sources) are in `cdi.api.validation`;
`cdi.api.cron` parses the schedule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from cdi.api.datavolume import DataVolume
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition, Int32, Timestamp
from cdi.api.sources import PvcSource
from cdi.api.storageprofile import DataImportCronSourceFormat

DEFAULT_IMPORTS_TO_KEEP = 3
MAX_MANAGED_DATA_SOURCE_LENGTH = 63


class GarbageCollect(StrEnum):
    """Whether outdated imports are deleted."""

    OUTDATED = "Outdated"
    NEVER = "Never"


class RetentionPolicy(StrEnum):
    """Whether the DataVolumes and DataSource outlive the cron when it is deleted."""

    NONE = "None"
    ALL = "All"


class DataImportCronConditionType(StrEnum):
    """Conditions a DataImportCron reports."""

    PROGRESSING = "Progressing"
    UP_TO_DATE = "UpToDate"


class DataImportCronSpec(ApiModel):
    """The DataVolume template, when to poll, and what to keep."""

    template: DataVolume
    schedule: str
    garbage_collect: GarbageCollect = GarbageCollect.OUTDATED
    imports_to_keep: Annotated[Int32, Field(ge=0)] = DEFAULT_IMPORTS_TO_KEEP
    managed_data_source: Annotated[str, Field(max_length=MAX_MANAGED_DATA_SOURCE_LENGTH)]
    retention_policy: RetentionPolicy | None = None
    service_account_name: Annotated[str, Field(min_length=1)] | None = None
    created_by: str | None = None


class ImportStatus(ApiModel):
    """An import in progress. Upstream spells these two JSON keys capitalised."""

    data_volume_name: str = Field(alias="DataVolumeName")
    digest: str = Field(alias="Digest")


class DataImportCronStatus(ApiModel):
    """Current and last imports, polling times and the Progressing/UpToDate conditions."""

    current_imports: list[ImportStatus] = Field(default_factory=list)
    last_imported_pvc: PvcSource | None = Field(default=None, alias="lastImportedPVC")
    last_execution_timestamp: Timestamp | None = None
    last_import_timestamp: Timestamp | None = None
    source_format: DataImportCronSourceFormat | None = None
    conditions: list[Condition] = Field(default_factory=list)


class DataImportCron(ApiObject):
    """A scheduled importer that keeps a DataSource pointing at the newest image."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "DataImportCron"
    spec: DataImportCronSpec
    status: DataImportCronStatus = Field(default_factory=DataImportCronStatus)
