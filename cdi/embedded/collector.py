"""Deletion and garbage collection in the embedded store, inside the write transaction of the verb.

`delete` follows the API server and Kubernetes' garbage collector, all three propagation policies:
- Background (the default): the object goes (or waits for its finalizers with a deletionTimestamp);
  dependents whose owners are all gone are deleted by `collect_garbage` in the same transaction.
- Foreground: the object gets the `foregroundDeletion` finalizer and a deletionTimestamp; its dependents
  are deleted first (foreground in turn); once none with `blockOwnerDeletion: true` is left, the
  finalizer goes and with it the object.
- Orphan: references to the object are removed from its dependents, which stay.
Preconditions (uid, resourceVersion) that do not hold are a `Conflict`. References to vanished owners
are dropped from objects that still have a live owner. A namespace being deleted has its contents
deleted and disappears once it is empty, as the namespace controller does.
"""

from __future__ import annotations

import copy
from datetime import datetime

from cdi.cluster.errors import Conflict
from cdi.cluster.kinds import KindRegistry, ResourceKind
from cdi.cluster.protocol import DeleteOptions, Object
from cdi.embedded.semantics import NAMESPACE_FINALIZER, is_deleting, is_finalized, is_namespace, mark_deleting
from cdi.embedded.sqlite import Key, Transaction

FOREGROUND_FINALIZER = "foregroundDeletion"


def delete(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, stored: Object, now: datetime,
           options: DeleteOptions) -> None:
    _check_preconditions(kind, stored, options)
    uid = str(stored["metadata"]["uid"])
    if options.propagation == "Orphan":
        _orphan_dependents(tx, uid)
    if options.propagation == "Foreground" and not is_deleting(stored) and tx.dependents_of(uid):
        waiting = mark_deleting(stored, kind, now)
        waiting["metadata"]["finalizers"] = [*(waiting["metadata"].get("finalizers") or []), FOREGROUND_FINALIZER]
        tx.put(key, waiting, "MODIFIED", stored)
        for dependent in tx.dependents_of(uid):
            obj = tx.get(dependent)
            if obj is not None:
                delete(tx, kinds, kind_of(kinds, dependent, obj), dependent, obj, now, DeleteOptions("Foreground"))
    else:
        start_deleting(tx, kind, key, stored, now)
    collect_garbage(tx, kinds, now)


def _check_preconditions(kind: ResourceKind, stored: Object, options: DeleteOptions) -> None:
    meta, name = stored["metadata"], stored["metadata"]["name"]
    if options.uid is not None and options.uid != meta.get("uid"):
        raise Conflict(f'Operation cannot be fulfilled on {kind.kind} "{name}": the UID in the precondition '
                       f"({options.uid}) does not match the UID in record ({meta.get('uid')}). The object might have "
                       "been deleted and then recreated")
    if options.resource_version is not None and options.resource_version != meta.get("resourceVersion"):
        raise Conflict(f'Operation cannot be fulfilled on {kind.kind} "{name}": the ResourceVersion in the '
                       f"precondition ({options.resource_version}) does not match the ResourceVersion in record "
                       f"({meta.get('resourceVersion')}). The object might have been modified")


def _orphan_dependents(tx: Transaction, uid: str) -> None:
    for dependent in tx.dependents_of(uid):
        obj = tx.get(dependent)
        if obj is None:
            continue
        freed = copy.deepcopy(obj)
        freed["metadata"]["ownerReferences"] = [ref for ref in obj["metadata"].get("ownerReferences") or []
                                                if ref.get("uid") != uid]
        if not freed["metadata"]["ownerReferences"]:
            del freed["metadata"]["ownerReferences"]
        tx.put(dependent, freed, "MODIFIED", obj)


def start_deleting(tx: Transaction, kind: ResourceKind, key: Key, stored: Object, now: datetime) -> bool:
    """Delete or start deleting `stored`; False if it was already being deleted."""
    if is_deleting(stored):
        return False
    deleting = mark_deleting(stored, kind, now)
    if is_finalized(deleting) and not is_namespace(kind):  # a namespace is emptied first
        tx.remove(key, stored)
    else:
        tx.put(key, deleting, "MODIFIED", stored)
    return True


def collect_garbage(tx: Transaction, kinds: KindRegistry, now: datetime) -> None:
    """Delete dependents of vanished owners, finish foreground deletions and terminating namespaces."""
    while _collect_once(tx, kinds, now):
        pass


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
            start_deleting(tx, kind_of(kinds, key, obj), key, obj, now)
        changed = True
    for key in tx.foreground_deleting():
        changed = _finish_foreground(tx, key) or changed
    for namespace in tx.terminating_namespaces():
        changed = _drain_namespace(tx, kinds, namespace, now) or changed
    return changed


def _finish_foreground(tx: Transaction, key: Key) -> bool:
    """Drop `foregroundDeletion` once no dependent that blocks its owner's deletion is left."""
    obj = tx.get(key)
    if obj is None:
        return False
    uid = obj["metadata"]["uid"]
    for dependent in tx.dependents_of(uid):
        other = tx.get(dependent)
        if other is not None and any(ref.get("uid") == uid and ref.get("blockOwnerDeletion")
                                     for ref in other["metadata"].get("ownerReferences") or []):
            return False
    done = copy.deepcopy(obj)
    done["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != FOREGROUND_FINALIZER]
    if not done["metadata"]["finalizers"]:
        del done["metadata"]["finalizers"]
    if is_finalized(done):
        tx.remove(key, done)
    else:
        tx.put(key, done, "MODIFIED", obj)
    return True


def _drain_namespace(tx: Transaction, kinds: KindRegistry, namespace: str, now: datetime) -> bool:
    """Delete what a terminating namespace holds; finalize the namespace once nothing is left."""
    members = tx.keys_in_namespace(namespace)
    changed = False
    for key in members:
        obj = tx.get(key)
        if obj is not None:
            changed = start_deleting(tx, kind_of(kinds, key, obj), key, obj, now) or changed
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


def kind_of(kinds: KindRegistry, key: Key, obj: Object) -> ResourceKind:
    """The served kind of a stored object; a plain stand-in for kinds this build no longer serves."""
    return kinds.in_group(key.group, key.kind) or ResourceKind(
        str(obj.get("apiVersion", "")), key.kind, key.kind.lower() + "s", namespaced=bool(key.namespace))
