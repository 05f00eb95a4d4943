"""The foundation every API model stands on: the shared pydantic base, object metadata and conditions.

`ApiModel` fixes the conventions all of `cdi.api` follows: upstream's camelCase JSON names (as aliases,
Python code uses snake_case), unknown fields kept verbatim (`extra="allow"`) so that a manifest we parse
and write back loses nothing, and serialisation that emits only what was given, assigned or changed, so
that no default appears in output that was not in the input. `ApiObject` adds apiVersion/kind/metadata
for top-level kinds. The kind registry (`cdi.api.registry`) parses and dumps these objects; the CRD
generator turns the same models into OpenAPI schemas (via `cdi.api.openapi`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    StrictBool,
    WithJsonSchema,
    model_serializer,
)
from pydantic.alias_generators import to_camel

CDI_GROUP = "cdi.kubevirt.io"
UPLOAD_GROUP = "upload.cdi.kubevirt.io"
CDI_VERSION = "v1beta1"
CDI_API_VERSION = f"{CDI_GROUP}/{CDI_VERSION}"
UPLOAD_API_VERSION = f"{UPLOAD_GROUP}/{CDI_VERSION}"

# Opaque JSON objects: foreign structures (affinity, tolerations, TLS profiles) we carry but never read.
JsonObject = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]
# An RFC 3339 timestamp, kept as the string the API server wrote so round trips are exact.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
# Kubernetes int32 fields; strict so that "3" is rejected as the API server would, not coerced.
Int32 = Annotated[int, Strict(), Field(json_schema_extra={"format": "int32"})]
Int64 = Annotated[int, Strict(), Field(json_schema_extra={"format": "int64"})]


class ApiModel(BaseModel):
    """Base of every API structure: camelCase aliases, unknown fields preserved, minimal output."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        alias_generator=to_camel,
        # A model's validator and serializer are built when it is first used, not when its class is
        # defined: a `cdi` command uses a few of the ~80 models, and building them all cost ~0.2 s of
        # CPU in every command's start (and in every process that imports the API).
        defer_build=True,
    )

    def model_post_init(self, context: Any, /) -> None:
        # pydantic counts every extra key as "set"; an unknown key that happens to equal a field's
        # Python name ("content_type") must not make that field look given.
        fields = type(self).model_fields
        for key in self.__pydantic_extra__ or {}:
            if key in fields:
                self.model_fields_set.discard(key)

    @model_serializer(mode="wrap")
    def _emit_changed_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        # `exclude_unset` only knows about fields that were given or assigned. A default that code
        # changed in place (`dv.status.conditions.append(...)`) must still be written out, so any
        # field whose value now differs from its default counts as set.
        fields_set = self.model_fields_set
        for name, default in _defaults_of(type(self)).items():
            if name not in fields_set and getattr(self, name) != default:
                fields_set.add(name)
        return handler(self)


_DEFAULTS: dict[type[ApiModel], dict[str, Any]] = {}


def _defaults_of(model: type[ApiModel]) -> dict[str, Any]:
    """Each field's default, made once per class (a default factory may build a whole sub-model, and
    every dump compares every unset field): only compared against, never handed out or changed."""
    found = _DEFAULTS.get(model)
    if found is None:
        found = _DEFAULTS[model] = {name: field.get_default(call_default_factory=True)
                                    for name, field in model.model_fields.items()}
    return found


class OwnerReference(ApiModel):
    """An object that owns this one; garbage collection follows these links."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    name: str
    uid: str
    controller: StrictBool | None = None
    block_owner_deletion: StrictBool | None = None


class ObjectMeta(ApiModel):
    """Kubernetes object metadata (the subset CDI reads or writes; everything else is kept as is)."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    deletion_grace_period_seconds: Int64 | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)
    finalizers: list[str] = Field(default_factory=list)
    managed_fields: list[JsonObject] = Field(default_factory=list)


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One condition in a status: the shape shared by DataVolume, DataSource, DataImportCron, CDI."""

    type: str
    status: ConditionStatus
    last_transition_time: Timestamp | None = None
    last_heartbeat_time: Timestamp | None = None
    reason: str | None = None
    message: str | None = None


class ApiObject(ApiModel):
    """A top-level object: apiVersion, kind and metadata, plus whatever the kind defines.

    Each kind redeclares `api_version` and `kind` with its own defaults, so an object built in code
    knows what it is; `dump_object` always writes both.
    """

    api_version: str = Field("", alias="apiVersion")
    kind: str = ""
    metadata: Annotated[
        ObjectMeta,
        WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
    ] = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        """The object's name, or "" when it has none yet."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """The object's namespace, or "" for cluster-scoped objects."""
        return self.metadata.namespace or ""
