"""The CDI kind: the operator's custom resource that installs and configures CDI itself.

The operator (`cdi.operator`, when it arrives) reconciles it into deployments; `spec.config` is copied
into the CDIConfig singleton once the operator holds config authority. Status follows the
controller-lifecycle-operator-sdk shape (phase, conditions, versions).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from cdi.api.cdiconfig import CDIConfigSpec
from cdi.api.core import PullPolicy
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition, Int32, JsonObject
from cdi.api.storageprofile import CloneStrategy

NonEmptyStr = Annotated[str, Field(min_length=1)]


class UninstallStrategy(StrEnum):
    """What happens to DataVolumes when CDI is uninstalled."""

    REMOVE_WORKLOADS = "RemoveWorkloads"
    BLOCK_UNINSTALL_IF_WORKLOADS_EXIST = "BlockUninstallIfWorkloadsExist"


class CDIPhase(StrEnum):
    """Lifecycle phases of the CDI installation."""

    UNSET = ""
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    DELETING = "Deleting"
    DELETED = "Deleted"
    ERROR = "Error"
    UPGRADING = "Upgrading"


class PatchType(StrEnum):
    """Patch flavours accepted in `customizeComponents.patches`."""

    JSON = "json"
    MERGE = "merge"
    STRATEGIC = "strategic"


class NodePlacement(ApiModel):
    """Where pods may be scheduled; the scheduling structures themselves are carried opaquely."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: JsonObject | None = None
    tolerations: list[JsonObject] = Field(default_factory=list)


class ComponentConfig(NodePlacement):
    """Placement and replica counts of CDI's own components."""

    deployment_replicas: Int32 | None = None
    api_server_replicas: Int32 | None = None
    upload_proxy_replicas: Int32 | None = None


class CustomizeComponentsPatch(ApiModel):
    """A patch applied to one resource the operator deploys."""

    resource_name: NonEmptyStr
    resource_type: NonEmptyStr
    patch: str
    type: PatchType


class Flags(ApiModel):
    """Extra command-line flags for CDI's components."""

    api: dict[str, str] = Field(default_factory=dict)
    controller: dict[str, str] = Field(default_factory=dict)
    upload_proxy: dict[str, str] = Field(default_factory=dict)


class CustomizeComponents(ApiModel):
    """Patches and flags for the deployed components."""

    patches: list[CustomizeComponentsPatch] = Field(default_factory=list)
    flags: Flags | None = None


class CertConfig(ApiModel):
    """Lifetime of one certificate kind (Go durations such as "48h")."""

    duration: str | None = None
    renew_before: str | None = None


class CDICertConfig(ApiModel):
    """Certificate rotation settings."""

    ca: CertConfig | None = None
    server: CertConfig | None = None
    client: CertConfig | None = None


class CDISpec(ApiModel):
    """How CDI is installed."""

    image_pull_policy: PullPolicy | None = None
    uninstall_strategy: UninstallStrategy | None = None
    infra: ComponentConfig = Field(default_factory=ComponentConfig)
    # Upstream's JSON key is singular although the Go field is `Workloads`.
    workload: NodePlacement = Field(default_factory=NodePlacement)
    customize_components: CustomizeComponents = Field(default_factory=CustomizeComponents)
    clone_strategy_override: CloneStrategy | None = None
    config: CDIConfigSpec | None = None
    cert_config: CDICertConfig | None = None
    priority_class: str | None = None


class CDIStatus(ApiModel):
    """Installation progress."""

    phase: CDIPhase = CDIPhase.UNSET
    conditions: list[Condition] = Field(default_factory=list)
    operator_version: str | None = None
    target_version: str | None = None
    observed_version: str | None = None


class CDI(ApiObject):
    """The CDI installation itself (cluster-scoped, normally one named `cdi`)."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "CDI"
    spec: CDISpec
    status: CDIStatus = Field(default_factory=CDIStatus)
