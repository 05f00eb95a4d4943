"""Generate CDI's CustomResourceDefinitions from the API models and the kind table.

One source of truth: the schema comes from the pydantic models (`cdi.api.openapi`), names, scope,
short names, printer columns and the status subresource from `cdi.api.kinds.KINDS`. The operator and
the embedded cluster install `all_crds()`; `python -m cdi.api.crdgen` prints them as multi-document
YAML for `kubectl apply -f -`.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from cdi.api.kinds import KINDS, KindInfo
from cdi.api.openapi import Schema, structural_schema

CRD_API_VERSION = "apiextensions.k8s.io/v1"

_TYPE_META = {
    "apiVersion": {
        "description": "APIVersion defines the versioned schema of this representation of an object.",
        "type": "string",
    },
    "kind": {
        "description": "Kind is a string value representing the REST resource this object represents.",
        "type": "string",
    },
    "metadata": {"type": "object"},
}


def crd_for(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    schema = _root_schema(info)
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": info.list_kind,
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    return {
        "apiVersion": CRD_API_VERSION,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name},
        "spec": {
            "group": info.group,
            "names": names,
            "scope": info.scope.value,
            "versions": [_version(info, version, schema) for version in info.versions],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    """The CRDs of every kind served as a custom resource (not the aggregated UploadTokenRequest)."""
    return [crd_for(info) for info in KINDS.values() if info.is_crd]


def _version(info: KindInfo, version: str, schema: Schema) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": version == info.versions[0],
        "schema": {"openAPIV3Schema": schema},
    }
    if info.status_subresource:
        entry["subresources"] = {"status": {}}
    if info.printer_columns:
        entry["additionalPrinterColumns"] = [
            {"name": c.name, "type": c.type, "jsonPath": c.json_path}
            | ({"description": c.description} if c.description else {})
            for c in info.printer_columns
        ]
    return entry


def _root_schema(info: KindInfo) -> Schema:
    """The model's schema with the standard TypeMeta/ObjectMeta properties at the root."""
    schema = structural_schema(info.model)
    schema["properties"] = {**schema["properties"], **_TYPE_META}
    return schema


def render_yaml(crds: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order they were built."""
    return yaml.safe_dump_all(crds, sort_keys=False, explicit_start=True)


def main() -> None:
    sys.stdout.write(render_yaml(all_crds()))


if __name__ == "__main__":
    main()
