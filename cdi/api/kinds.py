"""The table of API kinds: names, scope, short names, printer columns and the model for each.

One plain entry per kind, as upstream declares it. The CRD generator (`cdi.api.crdgen`) builds the
CustomResourceDefinitions from it, the registry (`cdi.api.registry`) dispatches parsing on it, and a
`cdi get`-style command can resolve "dv" or "datavolumes" and print the same columns kubectl would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cdi.api.cdi import CDI
from cdi.api.cdiconfig import CDIConfig
from cdi.api.dataimportcron import DataImportCron
from cdi.api.datasource import DataSource
from cdi.api.datavolume import DataVolume
from cdi.api.meta import CDI_GROUP, CDI_VERSION, UPLOAD_GROUP, ApiObject
from cdi.api.objecttransfer import ObjectTransfer
from cdi.api.populators import VolumeCloneSource, VolumeImportSource, VolumeUploadSource
from cdi.api.storageprofile import StorageProfile
from cdi.api.upload import UploadTokenRequest


class Scope(StrEnum):
    """Whether objects of a kind live in a namespace."""

    NAMESPACED = "Namespaced"
    CLUSTER = "Cluster"


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (CRD additionalPrinterColumns)."""

    name: str
    type: str
    json_path: str
    description: str = ""


@dataclass(frozen=True)
class KindInfo:
    """Everything about a kind that is not its schema."""

    kind: str
    group: str
    plural: str
    scope: Scope
    model: type[ApiObject]
    versions: tuple[str, ...] = (CDI_VERSION,)  # the first is the storage version
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()
    is_crd: bool = True  # False for aggregated-API kinds served by cdi-apiserver
    create_only: bool = False  # answered in the create response and never stored (UploadTokenRequest)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def namespaced(self) -> bool:
        return self.scope is Scope.NAMESPACED

    @property
    def api_version(self) -> str:
        """The preferred (storage) apiVersion, e.g. "cdi.kubevirt.io/v1beta1"."""
        return f"{self.group}/{self.versions[0]}"

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{version}" for version in self.versions)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    def names(self) -> set[str]:
        """Every name a user may type for this kind (kind, plural, singular, short names)."""
        return {self.kind.lower(), self.plural, self.singular, *self.short_names}


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_PHASE = PrinterColumn("Phase", "string", ".status.phase")

_ALL_KINDS = (
    KindInfo(
        "DataVolume", CDI_GROUP, "datavolumes", Scope.NAMESPACED, DataVolume,
        short_names=("dv", "dvs"), categories=("all",), status_subresource=True,
        printer_columns=(
            PrinterColumn("Phase", "string", ".status.phase", "The phase the data volume is in"),
            PrinterColumn("Progress", "string", ".status.progress",
                          "Transfer progress in percentage if known, N/A otherwise"),
            PrinterColumn("Restarts", "integer", ".status.restartCount",
                          "The number of times the transfer has been restarted."),
            _AGE,
        ),
    ),
    KindInfo("DataSource", CDI_GROUP, "datasources", Scope.NAMESPACED, DataSource,
             short_names=("das",), categories=("all",)),
    KindInfo(
        "DataImportCron", CDI_GROUP, "dataimportcrons", Scope.NAMESPACED, DataImportCron,
        short_names=("dic", "dics"), categories=("all",),
        printer_columns=(
            PrinterColumn("Format", "string", ".status.sourceFormat",
                          "The format in which created sources are saved"),
        ),
    ),
    KindInfo("StorageProfile", CDI_GROUP, "storageprofiles", Scope.CLUSTER, StorageProfile,
             status_subresource=True),
    KindInfo("CDIConfig", CDI_GROUP, "cdiconfigs", Scope.CLUSTER, CDIConfig),
    # v1alpha1 is still served for CDI only, never stored.
    KindInfo("CDI", CDI_GROUP, "cdis", Scope.CLUSTER, CDI, versions=(CDI_VERSION, "v1alpha1"),
             short_names=("cdi", "cdis"), printer_columns=(_AGE, _PHASE)),
    KindInfo("ObjectTransfer", CDI_GROUP, "objecttransfers", Scope.CLUSTER, ObjectTransfer,
             short_names=("ot", "ots"), status_subresource=True, printer_columns=(_AGE, _PHASE)),
    KindInfo("VolumeImportSource", CDI_GROUP, "volumeimportsources", Scope.NAMESPACED,
             VolumeImportSource),
    KindInfo("VolumeUploadSource", CDI_GROUP, "volumeuploadsources", Scope.NAMESPACED,
             VolumeUploadSource),
    KindInfo("VolumeCloneSource", CDI_GROUP, "volumeclonesources", Scope.NAMESPACED,
             VolumeCloneSource),
    KindInfo("UploadTokenRequest", UPLOAD_GROUP, "uploadtokenrequests", Scope.NAMESPACED,
             UploadTokenRequest, short_names=("utr", "utrs"), is_crd=False, create_only=True),
)

KINDS: dict[str, KindInfo] = {info.kind: info for info in _ALL_KINDS}


def resolve_kind(name: str) -> KindInfo | None:
    """The kind a user means by `name` ("dv", "DataVolume", "datavolumes"...), or None."""
    wanted = name.lower()
    for info in KINDS.values():
        if wanted in info.names():
            return info
    return None
