"""kubectl's client-side apply arithmetic: the three-way JSON merge patch, as pure functions.

`cdi apply` keeps the manifest it last applied in the `kubectl.kubernetes.io/last-applied-configuration`
annotation, as kubectl does. On the next apply, `three_way_patch(last_applied, manifest, live)` is the
change to make: fields the manifest sets that differ from the live object, plus `null` (delete) for
fields the previous manifest set and this one dropped. Fields neither manifest mentions — status, or
what controllers and the server filled in — are left alone, and labels and annotations merge key by
key. The patch is applied with RFC 7386 semantics (`cdi.embedded.semantics.merge_patch`). kubectl uses
exactly this for custom resources; for built-in kinds it uses strategic merge patches, which differ
only in how some lists merge.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from cdi.cluster.protocol import Object

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Fields a client may send back from `get -o yaml` but that only the server sets.
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "managedFields", "selfLink")


def three_way_patch(original: Any, modified: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that takes `current` to `modified`, deleting what `original` set and `modified` dropped."""
    patch: dict[str, Any] = {}
    if isinstance(original, Mapping):
        for key in original:
            if key not in modified and key in current:
                patch[key] = None
    for key, value in modified.items():
        live = current.get(key)
        if isinstance(value, Mapping) and isinstance(live, Mapping):
            nested = three_way_patch(original.get(key) if isinstance(original, Mapping) else None, value, live)
            if nested:
                patch[key] = nested
        elif key not in current or value != live:
            patch[key] = copy.deepcopy(value)
    return patch


def without_server_fields(obj: Object) -> Object:
    """A manifest with the server-owned metadata (uid, resourceVersion, timestamps...) removed."""
    cleaned = copy.deepcopy(obj)
    metadata = cleaned.get("metadata")
    if isinstance(metadata, dict):
        for field in _SERVER_FIELDS:
            metadata.pop(field, None)
    return cleaned


def with_last_applied(obj: Object) -> Object:
    """The manifest carrying its own compact JSON in the last-applied annotation, as kubectl writes it."""
    applied = copy.deepcopy(obj)
    metadata = applied.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    recorded = json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"
    metadata["annotations"] = {**annotations, LAST_APPLIED: recorded}
    return applied


def last_applied(obj: Object) -> Object | None:
    """The manifest recorded on a live object, or None if it has none (or it does not parse)."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(text, str):
        return None
    try:
        recorded = json.loads(text)
    except ValueError:
        return None
    return recorded if isinstance(recorded, dict) else None
