"""The CDIConfig kind: the cluster-wide singleton (`config`) holding CDI's user configuration.

Admins (or the operator, copying `CDI.spec.config`) write `spec`; the config controller computes
`status` (upload proxy URL, effective scratch class, per-StorageClass filesystem overhead, default pod
resources). Controllers and the importer read the status. The CDI operator CR embeds
`CDIConfigSpec` as `spec.config`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, WithJsonSchema

from cdi.api.core import LocalObjectReference, ResourceRequirements
from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Int32, JsonObject

CONFIG_NAME = "config"
PERCENT_PATTERN = r"^(0(?:\.\d{1,3})?|1)$"


def _check_percent(value: str) -> str:
    if not re.fullmatch(PERCENT_PATTERN, value, re.ASCII):
        raise ValueError(f'must be a fraction from 0 to 1 with at most three decimals, such as "0.06"; got {value!r}')
    return value


# A fraction written as a string: "0", "0.06", "0.055", "1".
Percent = Annotated[
    str, AfterValidator(_check_percent), WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN})
]


class WebhookPvcRendering(StrEnum):
    """Whether PVCs labelled for it are completed from the StorageProfile by the mutating webhook."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"


class FeatureGate(StrEnum):
    """Feature gates CDI knows (the list in `featureGates` may hold others; they are ignored)."""

    HONOR_WAIT_FOR_FIRST_CONSUMER = "HonorWaitForFirstConsumer"
    DATA_VOLUME_CLAIM_ADOPTION = "DataVolumeClaimAdoption"
    BOOTC_IMAGE_IMPORT = "BootcImageImport"
    WEBHOOK_PVC_RENDERING = "WebhookPvcRendering"


class FilesystemOverhead(ApiModel):
    """Space reserved for filesystem metadata on Filesystem volumes, globally and per StorageClass."""

    global_: Percent | None = Field(default=None, alias="global")
    storage_class: dict[str, Percent] = Field(default_factory=dict)


class ImportProxy(ApiModel):
    """Proxy settings passed to importer pods. Upstream spells the first two keys in capitals."""

    http_proxy: str | None = Field(default=None, alias="HTTPProxy")
    https_proxy: str | None = Field(default=None, alias="HTTPSProxy")
    no_proxy: str | None = None
    trusted_ca_proxy: str | None = Field(default=None, alias="trustedCAProxy")


class CDIConfigSpec(ApiModel):
    """User configuration of CDI."""

    upload_proxy_url_override: str | None = Field(default=None, alias="uploadProxyURLOverride")
    import_proxy: ImportProxy | None = None
    scratch_space_storage_class: str | None = None
    pod_resource_requirements: ResourceRequirements | None = None
    feature_gates: list[str] = Field(default_factory=list)
    webhook_pvc_rendering: WebhookPvcRendering = WebhookPvcRendering.ENABLED
    filesystem_overhead: FilesystemOverhead | None = None
    preallocation: StrictBool | None = None
    insecure_registries: list[str] = Field(default_factory=list)
    data_volume_ttl_seconds: Int32 | None = Field(default=None, alias="dataVolumeTTLSeconds")
    tls_security_profile: JsonObject | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    log_verbosity: Int32 | None = None


class CDIConfigStatus(ApiModel):
    """The configuration in effect, as computed by the config controller."""

    upload_proxy_url: str | None = Field(default=None, alias="uploadProxyURL")
    upload_proxy_ca: str | None = Field(default=None, alias="uploadProxyCA")
    import_proxy: ImportProxy | None = None
    scratch_space_storage_class: str | None = None
    default_pod_resource_requirements: ResourceRequirements | None = None
    filesystem_overhead: FilesystemOverhead | None = None
    preallocation: StrictBool = False
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)


class CDIConfig(ApiObject):
    """The singleton holding CDI's configuration (named `config`)."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "CDIConfig"
    spec: CDIConfigSpec
    status: CDIConfigStatus = Field(default_factory=CDIConfigStatus)
