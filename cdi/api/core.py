"""Kubernetes core types that CDI's API embeds: claim specs, resource lists, selectors, references.

Modelled minimally but with the real camelCase names, so a DataVolume's `pvc`/`storage` stanza and a
CDIConfig's pod resource requirements round-trip exactly. Quantities stay as written ("10Gi" or an
integer); `cdi.quantity.parse_quantity` turns them into bytes where a number is needed. Used by the
CDI kinds in this package and by the controllers that render PersistentVolumeClaims.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from cdi.api.meta import ApiModel, JsonObject
from cdi.quantity import QuantityError, parse_quantity_decimal

STORAGE_RESOURCE = "storage"
# The pattern Kubernetes CRDs put on quantity fields.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class AccessMode(StrEnum):
    """PersistentVolume access modes."""

    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class VolumeMode(StrEnum):
    """PersistentVolume volume modes."""

    BLOCK = "Block"
    FILESYSTEM = "Filesystem"


class ClaimVolumeMode(StrEnum):
    """Volume modes a DataVolume may request: the two real ones, or CDI's "let the profile decide"."""

    BLOCK = "Block"
    FILESYSTEM = "Filesystem"
    FROM_STORAGE_PROFILE = "FromStorageProfile"


class PullPolicy(StrEnum):
    """Container image pull policies."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


def _check_quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"a quantity must be a string such as '10Gi' or an integer, got {value!r}")
    try:
        parse_quantity_decimal(value)
    except QuantityError as e:
        raise ValueError(str(e)) from e
    return value


# A resource quantity as written in the manifest; validated, never normalised.
Quantity = Annotated[
    str | int,
    BeforeValidator(_check_quantity),
    WithJsonSchema({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }),
]
ResourceList = dict[str, Quantity]


class ResourceRequirements(ApiModel):
    """Compute resources of a container (used for CDI worker pods)."""

    limits: ResourceList = Field(default_factory=dict)
    requests: ResourceList = Field(default_factory=dict)
    claims: list[JsonObject] = Field(default_factory=list)


class VolumeResourceRequirements(ApiModel):
    """Storage resources of a claim; `requests["storage"]` is the requested size."""

    limits: ResourceList = Field(default_factory=dict)
    requests: ResourceList = Field(default_factory=dict)

    @property
    def storage_request(self) -> str | int | None:
        """The requested size as written, or None when the claim does not say."""
        return self.requests.get(STORAGE_RESOURCE)


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` term."""

    key: str
    operator: str
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    """A label query over objects."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the same namespace."""

    name: str | None = None


class TypedLocalObjectReference(ApiModel):
    """A reference to an object of a given kind in the same namespace."""

    api_group: str | None = None
    kind: str
    name: str


class TypedObjectReference(ApiModel):
    """A reference to an object of a given kind, possibly in another namespace."""

    api_group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class PersistentVolumeClaimSpec(ApiModel):
    """The spec of a PersistentVolumeClaim, as a DataVolume's `pvc` stanza carries it verbatim."""

    access_modes: list[str] = Field(default_factory=list)
    selector: LabelSelector | None = None
    resources: VolumeResourceRequirements = Field(default_factory=VolumeResourceRequirements)
    volume_name: str | None = None
    storage_class_name: str | None = None
    volume_mode: ClaimVolumeMode | None = None
    data_source: TypedLocalObjectReference | None = None
    data_source_ref: TypedObjectReference | None = None
    volume_attributes_class_name: str | None = None
