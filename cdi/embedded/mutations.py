"""The embedded store's write path: each verb as one function run inside a write transaction.

`cdi.embedded.store.EmbeddedCluster` calls these on the database thread with a `Transaction`; they
read the stored object, let `cdi.embedded.semantics` compute the object to write, and write it, so a
verb and the garbage collection it triggers commit together or not at all.

Garbage collection follows Kubernetes' background propagation: an object whose ownerReferences all
point at objects that no longer exist is deleted (respecting its own finalizers, so it may wait with
a deletionTimestamp), which may orphan its own dependents in turn; references to vanished owners are
dropped from objects that still have a live owner. A namespace being deleted has its contents deleted
and disappears once it is empty, as the namespace controller does.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cdi.admission import AdmissionRequest, Lookup
from cdi.cluster.errors import AlreadyExists, Invalid, NotFound
from cdi.cluster.kinds import KindRegistry, ResourceKind
from cdi.cluster.protocol import Object
from cdi.embedded.semantics import (
    NAMESPACE_FINALIZER,
    check_name,
    check_preconditions,
    checked_copy,
    generated_name,
    is_deleting,
    is_finalized,
    is_namespace,
    mark_deleting,
    merge_patch,
    owner_uids,
    prepare_create,
    prepare_update,
)
from cdi.embedded.sqlite import Key, Transaction

_NAME_ATTEMPTS = 10

# Admission: raises the API server's error when a write may not be stored (`cdi.admission.admit`).
Admit = Callable[[AdmissionRequest, Lookup], None]


def _no_admission(request: AdmissionRequest, lookup: Lookup) -> None:
    return None


def lookup_in(tx: Transaction) -> Lookup:
    """Admission's view of the other objects: reads inside the same write transaction."""
    return lambda group, kind, name, namespace: tx.get(Key(group, kind, namespace or "", name))


def key_for(kind: ResourceKind, name: str, namespace: str | None) -> Key:
    """The storage key for a request; `Invalid` when the namespace does not suit the kind's scope."""
    if kind.namespaced and not namespace:
        raise Invalid(f"{kind.kind} is namespaced: a namespace is required")
    if not kind.namespaced and namespace:
        raise Invalid(f"{kind.kind} is cluster-scoped: it takes no namespace (got {namespace!r})")
    return Key(kind.group, kind.kind, namespace or "", name)


def create(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, doc: Object, now: datetime,
           admit: Admit = _no_admission) -> Object:
    meta = doc["metadata"]
    # As the API server does, a namespace on a cluster-scoped object is ignored.
    namespace = meta.get("namespace") if kind.namespaced else None
    name = meta.get("name")
    if not name and meta.get("generateName"):
        name = _free_name(tx, kind, str(meta["generateName"]), namespace or "")
    key = key_for(kind, check_name(name, kind), namespace)
    if tx.get(key) is not None:
        raise AlreadyExists(f'{kind.resource} "{key.name}" already exists')
    obj = prepare_create(doc, kind, name=key.name, namespace=key.namespace, uid=str(uuid.uuid4()), now=now)
    admit(AdmissionRequest(kind, "CREATE", obj), lookup_in(tx))
    stored = tx.put(key, obj, "ADDED", None)
    if owner_uids(stored):
        collect_garbage(tx, kinds, now)
    return stored


def update(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, doc: Object, *, status_only: bool,
           now: datetime, admit: Admit = _no_admission) -> Object:
    meta = doc["metadata"]
    key = key_for(kind, check_name(meta.get("name"), kind), meta.get("namespace") if kind.namespaced else None)
    stored = _existing(tx, kind, key)
    check_preconditions(stored, doc, kind)
    new = prepare_update(stored, doc, kind, status_only=status_only)
    _admit_update(tx, admit, kind, stored, new, status_only)
    return _commit(tx, kinds, key, stored, new, now)


def patch(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, change: Mapping[str, Any], *,
          status_only: bool, now: datetime, admit: Admit = _no_admission) -> Object:
    if not isinstance(change, Mapping):
        raise Invalid(f"{kind.kind}: a merge patch must be a JSON object")
    stored = _existing(tx, kind, key)
    merged = checked_copy(merge_patch(stored, change), kind)
    check_preconditions(stored, merged, kind)  # a resourceVersion in the patch is a precondition
    new = prepare_update(stored, merged, kind, status_only=status_only)
    _admit_update(tx, admit, kind, stored, new, status_only)
    return _commit(tx, kinds, key, stored, new, now)


def _admit_update(tx: Transaction, admit: Admit, kind: ResourceKind, stored: Object, new: Object,
                  status_only: bool) -> None:
    """Admission for a write that changes something (an update that changes nothing is a no-op)."""
    if new != stored:
        admit(AdmissionRequest(kind, "UPDATE", new, stored, "status" if status_only else ""), lookup_in(tx))


def delete(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, now: datetime) -> None:
    if _delete(tx, kind, key, _existing(tx, kind, key), now):
        collect_garbage(tx, kinds, now)


def collect_garbage(tx: Transaction, kinds: KindRegistry, now: datetime) -> None:
    """Delete dependents of vanished owners and the contents of terminating namespaces, to a fixpoint."""
    while _collect_once(tx, kinds, now):
        pass


def _commit(tx: Transaction, kinds: KindRegistry, key: Key, stored: Object, new: Object, now: datetime) -> Object:
    if is_finalized(new):
        removed = tx.remove(key, new)
        collect_garbage(tx, kinds, now)
        return removed
    if new == stored:
        return stored  # nothing changed: no new resourceVersion, no watch event, as in Kubernetes
    written = tx.put(key, new, "MODIFIED", stored)
    if owner_uids(written) and owner_uids(written) != owner_uids(stored):
        collect_garbage(tx, kinds, now)
    return written


def _delete(tx: Transaction, kind: ResourceKind, key: Key, stored: Object, now: datetime) -> bool:
    """Delete or start deleting `stored`; False if it was already being deleted."""
    if is_deleting(stored):
        return False
    deleting = mark_deleting(stored, kind, now)
    if is_finalized(deleting) and not is_namespace(kind):  # a namespace is emptied first
        tx.remove(key, stored)
    else:
        tx.put(key, deleting, "MODIFIED", stored)
    return True


def _collect_once(tx: Transaction, kinds: KindRegistry, now: datetime) -> bool:
    changed = False
    for key in tx.dependents_of_missing_owners():
        obj = tx.get(key)
        if obj is None or is_deleting(obj):
            continue
        refs = obj["metadata"].get("ownerReferences") or []
        alive = [ref for ref in refs if tx.uid_exists(str(ref["uid"]), key.namespace)]
        if alive:
            trimmed = copy.deepcopy(obj)
            trimmed["metadata"]["ownerReferences"] = alive
            tx.put(key, trimmed, "MODIFIED", obj)
        else:
            _delete(tx, _kind_of(kinds, key, obj), key, obj, now)
        changed = True
    for namespace in tx.terminating_namespaces():
        changed = _drain_namespace(tx, kinds, namespace, now) or changed
    return changed


def _drain_namespace(tx: Transaction, kinds: KindRegistry, namespace: str, now: datetime) -> bool:
    """Delete what a terminating namespace holds; finalize the namespace once nothing is left."""
    members = tx.keys_in_namespace(namespace)
    changed = False
    for key in members:
        obj = tx.get(key)
        if obj is not None:
            changed = _delete(tx, _kind_of(kinds, key, obj), key, obj, now) or changed
    if members:
        return changed
    key = Key("", "Namespace", "", namespace)
    stored = tx.get(key)
    if stored is None:
        return changed
    finished = copy.deepcopy(stored)
    spec = finished.get("spec")
    if isinstance(spec, dict) and spec.get("finalizers"):
        spec["finalizers"] = [f for f in spec["finalizers"] if f != NAMESPACE_FINALIZER]
    if is_finalized(finished):
        tx.remove(key, finished)
    elif finished != stored:
        tx.put(key, finished, "MODIFIED", stored)
    else:
        return changed
    return True


def _existing(tx: Transaction, kind: ResourceKind, key: Key) -> Object:
    stored = tx.get(key)
    if stored is None:
        raise NotFound(f'{kind.resource} "{key.name}" not found')
    return stored


def _free_name(tx: Transaction, kind: ResourceKind, prefix: str, namespace: str) -> str:
    for _ in range(_NAME_ATTEMPTS):
        name = generated_name(prefix)
        if tx.get(Key(kind.group, kind.kind, namespace, name)) is None:
            return name
    raise AlreadyExists(f"{kind.resource}: no free name with generateName {prefix!r}")


def _kind_of(kinds: KindRegistry, key: Key, obj: Object) -> ResourceKind:
    """The served kind of a stored object; a plain stand-in for kinds this build no longer serves."""
    return kinds.in_group(key.group, key.kind) or ResourceKind(
        str(obj.get("apiVersion", "")), key.kind, key.kind.lower() + "s", namespaced=bool(key.namespace))
