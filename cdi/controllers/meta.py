"""Reading and building object metadata on plain Kubernetes documents: names, annotations, labels,
owner references, conditions and quantities. Used by every controller; pure functions only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cdi.cluster.protocol import Object
from cdi.quantity import QuantityError, parse_quantity


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    value = obj.get("metadata") or {}
    assert isinstance(value, dict)
    return value


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid", ""))


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_reference(owner: Mapping[str, Any]) -> Object:
    """An ownerReference that makes `owner` the controller of a dependent (GC deletes the dependent)."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": name_of(owner),
            "uid": uid_of(owner), "controller": True, "blockOwnerDeletion": True}


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    return any(ref.get("uid") == uid_of(owner) and ref.get("controller")
               for ref in meta(obj).get("ownerReferences") or [])


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def storage_request(spec: Mapping[str, Any]) -> int | None:
    """`spec.resources.requests.storage` in bytes, or None when absent or unparsable."""
    value = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if value is None:
        return None
    try:
        return parse_quantity(str(value))
    except QuantityError:
        return None


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
