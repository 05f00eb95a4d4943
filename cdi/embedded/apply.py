"""Server-side apply for the embedded store: field ownership in `metadata.managedFields`.

`apply(current, config, manager, ...)` is what `patch(..., patch_type="apply")` does on a real API
server, for the subset of structured-merge semantics CDI relies on: the manager owns exactly the
fields its applied configuration names (maps merge key by key; lists and scalars are atomic), a field
it named before and names no more is removed unless another manager also owns it, and setting a field
another manager owns to a different value is a `Conflict` listing each field — unless `force`, which
takes the field over. Writes that are not applies (`track_update`) move the fields they change to
their manager with operation "Update", so a later apply sees who set what.

Ownership is recorded as Kubernetes does (`fieldsType: FieldsV1`, `f:` keys, `.` for the map itself).
Objects that were never applied carry no managedFields here (a real API server records them always);
from the first apply on, every write to the object is tracked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from cdi.cluster.errors import BadRequest, Conflict
from cdi.cluster.protocol import Object

Path = tuple[str, ...]
_TRACKED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def leaf_paths(doc: Any, prefix: Path = ()) -> set[Path]:
    """The fields a document sets: map keys recurse, anything else (lists included) is one atomic field."""
    if isinstance(doc, dict) and (doc or not prefix):
        found: set[Path] = set()
        for key, value in doc.items():
            found |= leaf_paths(value, (*prefix, str(key)))
        return found
    return {prefix}


def tracked_paths(obj: Object, subresource: str) -> set[Path]:
    """The fields of an object that ownership covers: spec and the rest, a few metadata maps, or status."""
    if subresource == "status":
        return {p for p in leaf_paths({"status": obj.get("status")}) if obj.get("status") is not None}
    meta = obj.get("metadata") or {}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    paths = leaf_paths(body) if body else set()
    for key in _TRACKED_METADATA:
        if key in meta:
            paths |= leaf_paths(meta[key], ("metadata", key))
    return paths


def _get(doc: Any, path: Path) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return False, None
        doc = doc[part]
    return True, doc


def _set(doc: dict[str, Any], path: Path, value: Any) -> None:
    for part in path[:-1]:
        child = doc.get(part)
        if not isinstance(child, dict):
            child = doc[part] = {}
        doc = child
    doc[path[-1]] = copy.deepcopy(value)


def _delete(doc: dict[str, Any], path: Path) -> None:
    parents: list[tuple[dict[str, Any], str]] = []
    for part in path[:-1]:
        child = doc.get(part)
        if not isinstance(child, dict):
            return
        parents.append((doc, part))
        doc = child
    doc.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop maps the removal left empty
        if parent[key] == {}:
            del parent[key]
        else:
            break


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(tree, dict):
        return set()
    children = {k: v for k, v in tree.items() if k.startswith("f:")}
    if not children:
        return {prefix} if prefix else set()
    found: set[Path] = set()
    for key, value in children.items():
        found |= from_fields_v1(value, (*prefix, key[2:]))
    return found


def _entries(obj: Object) -> list[dict[str, Any]]:
    return [dict(e) for e in (obj.get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]


def _owners(entries: list[dict[str, Any]], subresource: str) -> list[tuple[int, set[Path]]]:
    return [(i, from_fields_v1(e.get("fieldsV1"))) for i, e in enumerate(entries)
            if e.get("subresource", "") == subresource]


def _overlaps(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def set_managed_fields(obj: Object, entries: list[dict[str, Any]] | None) -> None:
    """Record ownership on the object to store (after the store's own metadata rules ran); None: leave it."""
    if entries is None:
        return
    kept = [e for e in entries if e.get("fieldsV1")]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _entry(manager: str, operation: str, api_version: str, now: str, paths: set[Path],
           subresource: str) -> dict[str, Any]:
    entry = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
             "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}
    if subresource:
        entry["subresource"] = subresource
    return entry


def apply(current: Object | None, config: Object, manager: str, *, force: bool, now: str,
          subresource: str = "") -> tuple[Object, list[dict[str, Any]]]:
    """The object after `manager` applies `config` (server-side apply), and its managedFields entries;
    `Conflict` on contested fields."""
    if not manager:
        raise BadRequest("PATCH with an apply patch requires a fieldManager")
    if not isinstance(config, dict):
        raise BadRequest("an apply patch must be an object")
    api_version = str(config.get("apiVersion", ""))
    result: Object = copy.deepcopy(current) if current is not None else {
        "apiVersion": config.get("apiVersion"), "kind": config.get("kind"),
        "metadata": {k: v for k, v in (config.get("metadata") or {}).items() if k in ("name", "namespace")}}
    entries = _entries(result)
    mine_index = next((i for i, e in enumerate(entries) if e.get("manager") == manager
                       and e.get("operation") == "Apply" and e.get("subresource", "") == subresource), None)
    previous = from_fields_v1(entries[mine_index]["fieldsV1"]) if mine_index is not None else set()
    wanted = tracked_paths(config, subresource)
    others = [(i, paths) for i, paths in _owners(entries, subresource) if i != mine_index]
    conflicts = _conflicts(result, config, wanted, others, entries)
    if conflicts and not force:
        raise Conflict(_conflict_message(conflicts), causes=[f"{m}: .{'.'.join(p)}" for m, p in conflicts])
    for path in previous - wanted:
        if not any(path in paths for _, paths in others):
            _delete(result, path)
    for path in wanted:
        _set(result, path, _get(config, path)[1])
    taken = set(conflicts)
    for i, paths in others:
        kept = {p for p in paths if (_manager_label(entries[i]), p) not in taken}
        entries[i]["fieldsV1"] = to_fields_v1(kept) if kept else {}
    new_entry = _entry(manager, "Apply", api_version, now, wanted, subresource)
    if mine_index is None:
        entries.append(new_entry)
    else:
        entries[mine_index] = new_entry
    return result, entries


def _conflicts(current: Object, config: Object, wanted: set[Path], others: list[tuple[int, set[Path]]],
               entries: list[dict[str, Any]]) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(wanted):
        if _get(current, path) == _get(config, path):
            continue  # same value: ownership is shared, no conflict
        for i, paths in others:
            for owned in paths:
                if _overlaps(owned, path):
                    found.append((_manager_label(entries[i]), owned))
    return sorted(set(found))


def _manager_label(entry: dict[str, Any]) -> str:
    """How the API server names a conflicting manager: an Update manager with the version it wrote."""
    manager = f'"{entry.get("manager")}"'
    return f"{manager} using {entry.get('apiVersion')}" if entry.get("operation") == "Update" else manager


def _conflict_message(conflicts: list[tuple[str, Path]]) -> str:
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f'Apply failed with 1 conflict: conflict with {manager}: .{".".join(path)}'
    lines = "\n".join(f'- conflict with {m}: .{".".join(p)}' for m, p in conflicts)
    return f"Apply failed with {len(conflicts)} conflicts:\n{lines}"


def track_update(old: Object, new: Object, manager: str, *, now: str,
                 subresource: str = "") -> list[dict[str, Any]] | None:
    """The managedFields after a non-apply write: what it changed is owned by `manager` (operation Update).

    None for objects that carry no managedFields (never applied: not tracked, see the module docstring)."""
    entries = _entries(old)
    if not entries:
        return None
    before, after = tracked_paths(old, subresource), tracked_paths(new, subresource)
    changed = {p for p in after if _get(old, p) != _get(new, p)}
    removed = before - after
    for e in entries:
        if e.get("subresource", "") != subresource:
            continue
        paths = from_fields_v1(e.get("fieldsV1"))
        kept = {p for p in paths if p not in removed and not any(_overlaps(p, c) for c in changed)}
        e["fieldsV1"] = to_fields_v1(kept) if kept else {}
    if changed:
        mine = next((e for e in entries if e.get("manager") == manager and e.get("operation") == "Update"
                     and e.get("subresource", "") == subresource), None)
        owned = from_fields_v1(mine["fieldsV1"]) if mine else set()
        entry = _entry(manager, "Update", str(new.get("apiVersion", "")), now, owned | changed, subresource)
        entries = [e for e in entries if e is not mine] + [entry]
    return entries
