"""Parse manifests into typed API objects and write them back, losslessly.

`parse_object` is the edge where raw dicts become models: it picks the model from apiVersion/kind (via
`cdi.api.kinds.KINDS`) and turns every schema violation into one `ManifestError` listing all of them
with their field paths. `dump_object` is the way back: only what was given, assigned or changed is
written, unknown fields included, so `dump_object(parse_object(doc)) == doc`. Cluster backends, the
CLI and the controllers use these two; webhook-style rules are checked separately by
`cdi.api.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from cdi.api.kinds import KINDS, KindInfo
from cdi.api.meta import ApiModel, ApiObject

ModelT = TypeVar("ModelT", bound=ApiModel)


class ManifestError(ValueError):
    """A manifest that does not fit the API schema; `messages` names every offending field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def kind_info_for(doc: Mapping[str, Any]) -> KindInfo:
    """The kind a manifest declares, checked against the apiVersions we serve."""
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    info = KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        known = ", ".join(sorted(KINDS))
        raise ManifestError([f"kind: unknown kind {kind!r}; expected one of {known}"])
    if api_version not in info.api_versions:
        served = ", ".join(info.api_versions)
        raise ManifestError([f"apiVersion: {kind} is served as {served}, not {api_version!r}"])
    return info


def parse_object(doc: Mapping[str, Any]) -> ApiObject:
    """The typed object for a manifest; raises `ManifestError` listing every schema violation."""
    return parse_model(kind_info_for(doc).model, doc)


def parse_model(model: type[ModelT], doc: Mapping[str, Any]) -> ModelT:
    """Parse `doc` as `model` (for embedded structures or a known kind), raising `ManifestError`."""
    if not isinstance(doc, Mapping):
        raise ManifestError([f"expected a mapping, got {type(doc).__name__}"])
    try:
        # by_name=False: a snake_case key in a manifest is an unknown field, kept as written.
        return model.model_validate(dict(doc), by_alias=True, by_name=False)
    except pydantic.ValidationError as e:
        raise ManifestError([_describe(error) for error in e.errors()]) from e


def build_models() -> int:
    """Build every API model's validator and serializer now (each is otherwise built on its first use,
    see `ApiModel`); returns how many were built. For long-running processes: their first DataVolume
    would otherwise wait ~0.1 s, holding the event loop, while its model is built."""
    built = 0
    pending: list[type[ApiModel]] = [ApiModel]
    seen: set[type[ApiModel]] = set()
    while pending:
        for model in pending.pop().__subclasses__():
            if model in seen:
                continue
            seen.add(model)
            pending.append(model)
            if not model.__pydantic_complete__:
                model.model_rebuild()
                built += 1
    return built


def dump_object(obj: ApiModel) -> dict[str, Any]:
    """The manifest for `obj`: camelCase, unknown fields kept, no defaults that were never set.

    Top-level objects always carry apiVersion and kind, even when built in code without them.
    """
    data: dict[str, Any] = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(obj, ApiObject):
        data = {"apiVersion": obj.api_version, "kind": obj.kind, **data}
    return data


# pydantic's wording for the common cases, rephrased the way kubectl users read schema errors.
_MESSAGES = {
    "missing": "required field is missing",
    "enum": "must be one of {expected}, got {input!r}",
    "too_long": "must have at most {max_length} items",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} character(s) long",
    "greater_than_equal": "must be at least {ge}, got {input!r}",
    "bool_type": "must be true or false, got {input!r}",
    "int_type": "must be an integer, got {input!r}",
    "string_type": "must be a string, got {input!r}",
    "model_type": "must be a mapping, got {input!r}",
    "dict_type": "must be a mapping, got {input!r}",
    "list_type": "must be a list, got {input!r}",
}


def _describe(error: Any) -> str:
    path = _path(error["loc"])
    template = _MESSAGES.get(error["type"])
    if template is not None:
        message = template.format(input=error.get("input"), **error.get("ctx", {}))
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path
