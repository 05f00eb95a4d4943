"""Strict decoding: the fields of a CDI object that its schema does not know.

The API models keep unknown fields (`extra="allow"`) so that nothing a manifest carries is lost on a
round trip; a real API server decoding with `fieldValidation=Strict` (what kubectl sends) refuses them
instead, naming each one by its path. `unknown_fields` walks a parsed object the same way and returns
those paths ("spec.source.http.bogus", "spec.storage.accessModes[0]" never, only mapping keys).
Metadata is left out: the API server checks it against ObjectMeta, which the store's shape checks do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cdi.api.meta import ApiObject


def unknown_fields(obj: ApiObject) -> list[str]:
    """Paths of every field `obj` carries that its kind's schema does not define (metadata excepted)."""
    found = [key for key in obj.__pydantic_extra__ or {}]
    for name, field in type(obj).model_fields.items():
        if name == "metadata" or name not in obj.model_fields_set:
            continue
        found += _walk(getattr(obj, name), field.alias or name)
    return found


def _model(model: BaseModel, path: str) -> list[str]:
    found = [f"{path}.{key}" for key in model.__pydantic_extra__ or {}]
    for name, field in type(model).model_fields.items():
        if name in model.model_fields_set:
            found += _walk(getattr(model, name), f"{path}.{field.alias or name}")
    return found


def _walk(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return _model(value, path)
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _walk(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [found for key, item in value.items() if isinstance(item, BaseModel | list | dict)
                for found in _walk(item, f"{path}[{key}]")]
    return []
