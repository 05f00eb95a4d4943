"""The embedded store's write path: each verb as one function run inside a write transaction.

`cdi.embedded.store.EmbeddedCluster` calls these on the database thread with a `Transaction`; they
read the stored object, let `cdi.embedded.semantics` compute the object to write, pass it through
admission (`cdi.admission`: mutating first, which may change what is stored, then validating), and
write it, so a verb and the garbage collection it triggers
(`cdi.embedded.collector`) commit together or not at all. Patches come in three types: JSON merge
(RFC 7386), JSON patch (RFC 6902, `cdi.embedded.jsonpatch`) and server-side apply
(`cdi.embedded.apply`, which also creates a missing object); field ownership is kept for objects that
were ever applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cdi.admission import AdmissionRequest, Lookup, Mutate
from cdi.cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from cdi.cluster.kinds import KindRegistry, ResourceKind
from cdi.cluster.protocol import DeleteOptions, Object, PatchType
from cdi.embedded import apply as ssa
from cdi.embedded import collector
from cdi.embedded.jsonpatch import apply_json_patch
from cdi.embedded.semantics import (
    check_name,
    check_preconditions,
    checked_copy,
    format_time,
    generated_name,
    is_finalized,
    merge_patch,
    owner_uids,
    prepare_create,
    prepare_update,
)
from cdi.embedded.sqlite import Key, Transaction

_NAME_ATTEMPTS = 10
DEFAULT_MANAGER = "cdi"  # the field manager of writes that name none (client-go uses the program's name)

# Admission: raises the API server's error when a write may not be stored (`cdi.admission.admit`).
Admit = Callable[[AdmissionRequest, Lookup], None]


def no_admission(request: AdmissionRequest, lookup: Lookup) -> None:
    return None


def no_mutation(request: AdmissionRequest, lookup: Lookup) -> Object | None:
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
           admit: Admit = no_admission, managed_fields: list[dict[str, Any]] | None = None,
           mutate: Mutate = no_mutation) -> Object:
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
    ssa.set_managed_fields(obj, managed_fields)
    obj = _admitted(tx, mutate, admit, AdmissionRequest(kind, "CREATE", obj))
    stored = tx.put(key, obj, "ADDED", None)
    if owner_uids(stored):
        collector.collect_garbage(tx, kinds, now)
    return stored


def bind_pod(tx: Transaction, kinds: KindRegistry, binding: Object, now: datetime) -> Object:
    """A `Binding` (what a scheduler creates): set the pod's `spec.nodeName` once; the only way to set it
    on an existing pod, as on a real API server."""
    meta, target = binding.get("metadata") or {}, binding.get("target") or {}
    namespace, name, node = str(meta.get("namespace") or ""), str(meta.get("name") or ""), target.get("name")
    if target.get("kind", "Node") != "Node" or not isinstance(node, str) or not node:
        raise Invalid(f'Binding "{name}" is invalid: target: a Node name is required')
    pod_kind = kinds.lookup("v1", "Pod")
    key = key_for(pod_kind, name, namespace)
    stored = _existing(tx, pod_kind, key)
    assigned = (stored.get("spec") or {}).get("nodeName")
    if assigned:
        raise Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
                       f'to node "{assigned}"')
    if stored["metadata"].get("deletionTimestamp"):
        raise Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being deleted')
    bound = merge_patch(stored, {"spec": {"nodeName": node}})
    _commit(tx, kinds, key, stored, bound, now)
    return binding


def update(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, doc: Object, *, status_only: bool,
           now: datetime, admit: Admit = no_admission, field_manager: str | None = None,
           mutate: Mutate = no_mutation) -> Object:
    meta = doc["metadata"]
    key = key_for(kind, check_name(meta.get("name"), kind), meta.get("namespace") if kind.namespaced else None)
    stored = _existing(tx, kind, key)
    check_preconditions(stored, doc, kind)
    new = prepare_update(stored, doc, kind, status_only=status_only)
    ssa.set_managed_fields(new, ssa.track_update(stored, new, field_manager or DEFAULT_MANAGER, now=format_time(now),
                                                 subresource=_subresource(status_only)))
    new = _admit_update(tx, mutate, admit, kind, stored, new, status_only)
    return _commit(tx, kinds, key, stored, new, now)


def patch(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, change: Any, *,
          status_only: bool, now: datetime, admit: Admit = no_admission, patch_type: PatchType = "merge",
          field_manager: str | None = None, force: bool = False, mutate: Mutate = no_mutation) -> Object:
    if patch_type == "apply":
        return _apply(tx, kinds, kind, key, change, status_only=status_only, now=now, admit=admit,
                      manager=field_manager or "", force=force, mutate=mutate)
    stored = _existing(tx, kind, key)
    if patch_type == "json":
        merged = checked_copy(apply_json_patch(stored, change), kind)
    else:
        if not isinstance(change, Mapping):
            raise Invalid(f"{kind.kind}: a merge patch must be a JSON object")
        merged = checked_copy(merge_patch(stored, change), kind)
    check_preconditions(stored, merged, kind)  # a resourceVersion in the patch is a precondition
    new = prepare_update(stored, merged, kind, status_only=status_only)
    ssa.set_managed_fields(new, ssa.track_update(stored, new, field_manager or DEFAULT_MANAGER, now=format_time(now),
                                                 subresource=_subresource(status_only)))
    new = _admit_update(tx, mutate, admit, kind, stored, new, status_only)
    return _commit(tx, kinds, key, stored, new, now)


def _apply(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, config: Any, *, status_only: bool,
           now: datetime, admit: Admit, manager: str, force: bool, mutate: Mutate) -> Object:
    """Server-side apply: create the object from `config` if missing, else merge it by field ownership."""
    doc = checked_copy(config, kind)
    if doc["metadata"].get("name") not in (None, key.name):
        raise Invalid(f'{kind.kind} "{key.name}": the name in the applied configuration '
                      f'({doc["metadata"]["name"]}) does not match the request')
    stored = tx.get(key)
    applied, entries = ssa.apply(stored, doc, manager, force=force, now=format_time(now),
                                 subresource=_subresource(status_only))
    if stored is None:
        if status_only:
            raise NotFound(f'{kind.resource} "{key.name}" not found')
        applied["metadata"].update(name=key.name, **({"namespace": key.namespace} if key.namespace else {}))
        return create(tx, kinds, kind, checked_copy(applied, kind), now, admit, entries, mutate)
    merged = checked_copy(applied, kind)
    check_preconditions(stored, doc, kind)
    new = prepare_update(stored, merged, kind, status_only=status_only)
    ssa.set_managed_fields(new, entries)
    new = _admit_update(tx, mutate, admit, kind, stored, new, status_only)
    return _commit(tx, kinds, key, stored, new, now)


def _subresource(status_only: bool) -> str:
    return "status" if status_only else ""


def _admit_update(tx: Transaction, mutate: Mutate, admit: Admit, kind: ResourceKind, stored: Object, new: Object,
                  status_only: bool) -> Object:
    """Admission for a write that changes something (an update that changes nothing is a no-op)."""
    if new == stored:
        return new
    return _admitted(tx, mutate, admit, AdmissionRequest(kind, "UPDATE", new, stored, _subresource(status_only)))


def _admitted(tx: Transaction, mutate: Mutate, admit: Admit, request: AdmissionRequest) -> Object:
    """The object to store: mutated, then validated (`admit` raises when it may not be stored)."""
    lookup = lookup_in(tx)
    mutated = mutate(request, lookup)
    if mutated is not None:
        request = AdmissionRequest(request.kind, request.operation, mutated, request.old_object, request.subresource)
    admit(request, lookup)
    return request.object


def delete(tx: Transaction, kinds: KindRegistry, kind: ResourceKind, key: Key, now: datetime,
           options: DeleteOptions | None = None) -> None:
    collector.delete(tx, kinds, kind, key, _existing(tx, kind, key), now, options or DeleteOptions())


def collect_garbage(tx: Transaction, kinds: KindRegistry, now: datetime) -> None:
    """The collector over every reference in the store, not only what this transaction touched."""
    tx.sweep_all = True
    collector.collect_garbage(tx, kinds, now)


def _commit(tx: Transaction, kinds: KindRegistry, key: Key, stored: Object, new: Object, now: datetime) -> Object:
    if is_finalized(new):
        removed = tx.remove(key, new)
        collector.collect_garbage(tx, kinds, now)
        return removed
    if new == stored:
        return stored  # nothing changed: no new resourceVersion, no watch event, as in Kubernetes
    written = tx.put(key, new, "MODIFIED", stored)
    if owner_uids(written) != owner_uids(stored):
        collector.collect_garbage(tx, kinds, now)
    return written


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
