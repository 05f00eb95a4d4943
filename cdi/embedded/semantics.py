"""The pure Kubernetes rules of the embedded store: what the API server does to an object on each verb.

No I/O here: `cdi.embedded.mutations` reads the stored object, asks these functions for the object to
write, and writes it. The rules are the API server's: the server owns `uid`, `creationTimestamp`,
`generation`, `resourceVersion` and `deletionTimestamp`; `generation` starts at 1 and rises when
anything outside metadata and status changes (for every kind, where Kubernetes leaves it unset for a
few core kinds); kinds with a status subresource drop `status` on create and keep the stored status on
`update`, while `update_status` keeps everything but status; a stale resourceVersion or a different
uid is a `Conflict`; an object being deleted accepts no new finalizers. Patches are JSON merge
patches (RFC 7386).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cdi.cluster.errors import Conflict, Invalid
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Object

_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's: no vowels, no look-alikes
NAMESPACE_FINALIZER = "kubernetes"  # spec.finalizers of a Namespace, removed once it is empty


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a "Z", to the second, as metav1.Time serialises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def generated_name(prefix: str) -> str:
    """`generateName` plus five random characters, as the API server names such objects."""
    return prefix + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))


def checked_copy(obj: Any, kind: ResourceKind) -> Object:
    """A deep copy of a client's object after the shape checks every verb needs; raises `Invalid`."""
    if not isinstance(obj, Mapping):
        raise Invalid(f"{kind.kind}: an object must be a mapping, not {type(obj).__name__}")
    try:
        doc: Object = json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise Invalid(f"{kind.kind}: the object is not plain JSON: {e}") from e
    meta = doc.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise Invalid(f"{kind.kind}: metadata must be a mapping")
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise Invalid(f"{kind.kind}: metadata.{field} must map strings to strings")
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)):
        raise Invalid(f"{kind.kind}: metadata.finalizers must be a list of strings")
    owners = meta.get("ownerReferences")
    if owners is not None and not (isinstance(owners, list) and all(_is_owner_ref(ref) for ref in owners)):
        raise Invalid(f"{kind.kind}: metadata.ownerReferences entries need apiVersion, kind, name and uid")
    doc["apiVersion"], doc["kind"] = kind.api_version, kind.kind
    return doc


def check_name(name: Any, kind: ResourceKind) -> str:
    """The object name if it is a DNS subdomain (RFC 1123), else `Invalid`."""
    if not isinstance(name, str) or not name:
        raise Invalid(f"{kind.kind}: metadata.name: Required value: name or generateName is required")
    if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise Invalid(f'{kind.kind} "{name}" is invalid: metadata.name: a lowercase RFC 1123 subdomain must '
                      "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                      "with an alphanumeric character")
    return name


def prepare_create(doc: Object, kind: ResourceKind, *, name: str, namespace: str, uid: str, now: datetime) -> Object:
    """The object as first stored: server fields set, client-sent server fields dropped."""
    meta = doc["metadata"]
    for field in (*_SERVER_OWNED, "resourceVersion", "selfLink", "managedFields"):
        meta.pop(field, None)
    meta["name"] = name
    if namespace:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta.update(uid=uid, creationTimestamp=format_time(now), generation=1)
    if kind.status_subresource:
        doc.pop("status", None)
    if is_namespace(kind):
        doc.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
        doc["status"] = {"phase": "Active"}
    return doc


def check_preconditions(stored: Object, incoming: Object, kind: ResourceKind) -> None:
    """`Conflict` when the client's resourceVersion or uid is not the stored one."""
    name, meta, current = stored["metadata"]["name"], incoming["metadata"], stored["metadata"]
    if meta.get("uid") and meta["uid"] != current["uid"]:
        raise Conflict(f'Operation cannot be fulfilled on {kind.resource} "{name}": Precondition failed: '
                       f"UID in precondition: {meta['uid']}, UID in object meta: {current['uid']}")
    if meta.get("resourceVersion") and meta["resourceVersion"] != current["resourceVersion"]:
        raise Conflict(f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                       "modified; please apply your changes to the latest version and try again")


def prepare_update(stored: Object, incoming: Object, kind: ResourceKind, *, status_only: bool) -> Object:
    """The object to store for `update` (or `update_status`) of `stored` with `incoming`."""
    if status_only:
        updated = copy.deepcopy(stored)
        if "status" in incoming:
            updated["status"] = incoming["status"]
        else:
            updated.pop("status", None)
        return updated
    updated = copy.deepcopy(incoming)
    meta, old_meta = updated["metadata"], stored["metadata"]
    for field in ("name", "namespace", "resourceVersion", "selfLink", "managedFields", *_SERVER_OWNED):
        meta.pop(field, None)
        if field in old_meta:
            meta[field] = old_meta[field]
    if kind.status_subresource:
        _copy_key(stored, updated, "status")
    if is_deleting(stored):
        added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
        if added:
            raise Invalid(f'{kind.kind} "{old_meta["name"]}" is invalid: metadata.finalizers: Forbidden: no new '
                          f"finalizers can be added if the object is being deleted, found new finalizers "
                          f"{sorted(added)}")
    if _content(updated) != _content(stored):
        meta["generation"] = int(old_meta.get("generation", 0)) + 1
    return updated


def mark_deleting(stored: Object, kind: ResourceKind, now: datetime) -> Object:
    """The object after a `delete` that must wait for finalizers."""
    updated = copy.deepcopy(stored)
    updated["metadata"].update(deletionTimestamp=format_time(now), deletionGracePeriodSeconds=0)
    if is_namespace(kind):
        updated.setdefault("status", {})["phase"] = "Terminating"
    return updated


def is_deleting(obj: Object) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def is_finalized(obj: Object) -> bool:
    """Being deleted with nothing left to wait for: the store removes it for real."""
    spec = obj.get("spec")
    namespace_finalizers = spec.get("finalizers") if isinstance(spec, dict) and obj.get("kind") == "Namespace" else None
    return is_deleting(obj) and not obj["metadata"].get("finalizers") and not namespace_finalizers


def is_namespace(kind: ResourceKind) -> bool:
    return kind.group == "" and kind.kind == "Namespace"


def owner_uids(obj: Object) -> list[str]:
    return [str(ref["uid"]) for ref in obj["metadata"].get("ownerReferences") or ()]


def _content(obj: Object) -> Object:
    """What generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _copy_key(source: Object, target: Object, key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


def _is_owner_ref(ref: Any) -> bool:
    return isinstance(ref, dict) and all(isinstance(ref.get(f), str) and ref[f] for f in ("apiVersion", "kind",
                                                                                           "name", "uid"))
