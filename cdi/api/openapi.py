"""Turn an API model into a structural OpenAPI v3 schema, as a CRD's `openAPIV3Schema` needs it.

pydantic produces JSON Schema with `$ref`/`$defs`, `anyOf [X, null]` for optional fields, titles and
defaults. A CRD schema must be structural: fully inlined, a `type` on every node (or one of the
Kubernetes escape hatches), no nullable unions, and no `additionalProperties` beside `properties`.
Defaults are dropped on purpose: upstream applies them in code, not in the API server, and stored
objects must not grow fields the user never wrote. Used by `cdi.api.crdgen`.
"""

from __future__ import annotations

from typing import Any

from cdi.api.meta import ApiModel

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "default", "examples"}


def structural_schema(model: type[ApiModel]) -> Schema:
    """The structural OpenAPI schema of `model`, keyed by upstream's JSON names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Schema] = raw.pop("$defs", {})
    return _convert(raw, definitions)


def _convert(node: Schema, definitions: dict[str, Schema]) -> Schema:
    node = _resolve(node, definitions)
    node = _drop_null_branch(node)
    if "$ref" in node or "allOf" in node:
        return _convert(node, definitions)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, definitions)
        elif key == "anyOf":
            out[key] = [_convert(branch, definitions) for branch in value]
        elif key == "additionalProperties":
            continue  # `true` from extra="allow": unknown fields are pruned by the API server, as upstream
        else:
            out[key] = value
    if out.get("type") == "object" and not out.get("properties"):
        out.pop("properties", None)
    return out


def _resolve(node: Schema, definitions: dict[str, Schema]) -> Schema:
    """Inline a `$ref` (keeping sibling keys such as a description) or a single-member `allOf`."""
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **siblings}
    if "allOf" in node and len(node["allOf"]) == 1:
        siblings = {k: v for k, v in node.items() if k != "allOf"}
        return {**node["allOf"][0], **siblings}
    return node


def _drop_null_branch(node: Schema) -> Schema:
    """`anyOf [X, {type: null}]` (an optional field) becomes X; the field is simply not required."""
    branches = node.get("anyOf")
    if not branches:
        return node
    kept = [branch for branch in branches if branch.get("type") != "null"]
    if len(kept) == len(branches):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}
