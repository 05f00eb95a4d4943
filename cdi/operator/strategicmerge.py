"""Kubernetes' strategic merge patch, pure, for the kinds the install renders: `strategic_merge(doc, patch)`.

`cdi.operator.customize` applies the CDI resource's `customizeComponents` patches of type `strategic` with it,
as upstream's operator applies them with apimachinery's `strategicpatch.StrategicMergePatch` over the Go types.
The rules are apimachinery's:

* maps merge recursively; a `null` value deletes the key; scalars and lists without a patch strategy replace;
* a list whose Go field is tagged `patchStrategy:"merge"` merges: a list of maps by its `patchMergeKey`
  (`containers` and `env` by `name`, `ports` of a container by `containerPort`, `volumeMounts` by `mountPath`,
  …: `SCHEMAS`, copied from the k8s.io/api struct tags), items present in both merged recursively, new ones
  appended in the patch's order; a list of scalars (`finalizers`) becomes the union;
* directives: `$patch: replace` (a map, or a list when it is an item of its own, replaces what it patches),
  `$patch: delete` (the list item with that merge key is deleted; a map is emptied), `$patch: merge` (the
  default),
  `$retainKeys` (only those keys of the map remain), `$deleteFromPrimitiveList/<field>` (those values leave
  the scalar list `<field>`). `$setElementOrder/<field>` only orders a merged list and is accepted and
  ignored: the content is the same;
* the order of a merged list is apimachinery's: the patch's items in its order, interleaved with the items
  only the object has by their order in the object (so an added item comes first unless the patch also
  names an item it follows).

Where apimachinery takes a map the object does not have yet as it is, directives and all, we apply them (no
`$retainKeys` or `$patch` reaches the API server, whose strict field validation would refuse it).

Where the schema has no entry — a field of a known kind that carries no patch strategy (tolerations, a
ClusterRole's rules, a CRD's versions) — lists are replaced, which is also what apimachinery does for such
fields, so nothing is said. Kinds whose Go types carry no list strategies at all (ConfigMap, Secret,
APIService, CRDs, RBAC) need only the metadata entries. The prometheus-operator's kinds are custom resources,
which the API server refuses to patch strategically; so does this module (`StrategicMergeError`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Object = dict[str, Any]
PATCH, RETAIN_KEYS = "$patch", "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER = "$deleteFromPrimitiveList/", "$setElementOrder/"


class StrategicMergeError(ValueError):
    """The patch cannot be applied (an unknown directive, an item without its merge key, a custom resource)."""


@dataclass(frozen=True)
class Field:
    """A field's struct tags: its Go type's fields (for a list, each item's), and its patch strategy."""

    of: Mapping[str, Field] = field(default_factory=dict)
    merge_key: str | None = None  # patchMergeKey
    merge: bool = False  # patchStrategy includes "merge"


def _keyed(key: str, of: Mapping[str, Field] | None = None) -> Field:
    return Field(of or {}, merge_key=key, merge=True)


# k8s.io/api's struct tags, for the fields the install's objects have (and their siblings of the same types).
# retainKeys (DeploymentSpec.strategy, PodSpec.volumes' items) needs no entry: `$retainKeys` is honoured
# wherever a patch carries it, as only patches made for such fields do.
_META = {"metadata": Field({"finalizers": Field(merge=True), "ownerReferences": _keyed("uid")})}
_CONTAINER = {"ports": _keyed("containerPort"), "env": _keyed("name"), "volumeMounts": _keyed("mountPath"),
              "volumeDevices": _keyed("devicePath")}
_POD_SPEC = {"containers": _keyed("name", _CONTAINER), "initContainers": _keyed("name", _CONTAINER),
             "ephemeralContainers": _keyed("name", _CONTAINER), "volumes": _keyed("name"),
             "imagePullSecrets": _keyed("name"), "hostAliases": _keyed("ip"),
             "topologySpreadConstraints": _keyed("topologyKey"), "resourceClaims": _keyed("name"),
             "schedulingGates": _keyed("name")}
_DEPLOYMENT = {**_META, "spec": Field({"template": Field({**_META, "spec": Field(_POD_SPEC)})})}
SCHEMAS: Mapping[tuple[str, str], Mapping[str, Field]] = {
    ("apps/v1", "Deployment"): _DEPLOYMENT,
    ("v1", "Service"): {**_META, "spec": Field({"ports": _keyed("port")})},
    ("v1", "ServiceAccount"): {**_META, "secrets": _keyed("name")},
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): {**_META, "webhooks": _keyed("name")},
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): {**_META, "webhooks": _keyed("name")},
    **{(api_version, kind): _META for api_version, kind in (
        ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Namespace"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apiregistration.k8s.io/v1", "APIService"), ("apiextensions.k8s.io/v1", "CustomResourceDefinition"))},
}


def strategic_merge(document: Mapping[str, Any], patch: Any) -> Object:
    """`document` with `patch` applied, as the API server would apply a strategic merge patch to it."""
    kind = (str(document.get("apiVersion", "")), str(document.get("kind", "")))
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise StrategicMergeError(f"strategic merge patch is not supported for {kind[1]} ({kind[0]}), a custom "
                                  "resource: use a json or merge patch")
    if not isinstance(patch, dict):
        raise StrategicMergeError("a strategic merge patch must be a JSON object")
    merged = _merge_map(copy.deepcopy(dict(document)), patch, schema)
    if merged is None:
        raise StrategicMergeError("the patch deletes the whole object ($patch: delete)")
    return merged


def _merge_map(original: Object, patch: Mapping[str, Any], schema: Mapping[str, Field]) -> Object | None:
    """The merged map, or None when the patch says `$patch: delete`. `original` is ours to change."""
    directive = patch.get(PATCH, "merge")
    if directive == "delete":
        return None
    if directive == "replace":
        return _plain(patch, schema)
    if directive != "merge":
        raise StrategicMergeError(f"unknown patch type: {directive!r} (one of merge, replace, delete)")
    # Deletions first (apimachinery takes the keys in Go's random map order: only a patch that both adds and
    # deletes one value could tell, and it contradicts itself).
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            name = key[len(DELETE_FROM_PRIMITIVE_LIST):]
            if isinstance(original.get(name), list):
                original[name] = [item for item in original[name] if item not in _list(value, key)]
    for key, value in patch.items():
        if key in (PATCH, RETAIN_KEYS) or key.startswith((SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST)):
            continue
        elif key.startswith("$"):
            raise StrategicMergeError(f"unknown directive {key!r}")
        elif value is None:
            original.pop(key, None)
        else:
            original[key] = _merge_value(original.get(key), value, schema.get(key, Field()))
    if RETAIN_KEYS in patch:
        retained = set(_list(patch[RETAIN_KEYS], RETAIN_KEYS))
        original = {key: value for key, value in original.items() if key in retained}
    return original


def _merge_value(original: Any, patch: Any, spec: Field) -> Any:
    if isinstance(patch, dict):  # `$patch: delete` of a map leaves it empty, as apimachinery's
        return _merge_map(original if isinstance(original, dict) else {}, patch, spec.of) or {}
    if isinstance(patch, list) and spec.merge:
        base = original if isinstance(original, list) else []
        return _merge_keyed(base, patch, spec) if spec.merge_key else _union(base, patch)
    if isinstance(patch, list):
        return [_plain(item, spec.of) if isinstance(item, dict) else item for item in patch]
    return patch


def _merge_keyed(original: list[Any], patch: list[Any], spec: Field) -> list[Any]:
    """A list of maps merged by `spec.merge_key`, as apimachinery's `mergeSlice`: an item `$patch: replace`
    makes the other items the list, `$patch: delete` removes the item with its key; the rest are merged into
    the item with the same key or added, in apimachinery's order (`_ordered`)."""
    key = str(spec.merge_key)
    for item in patch:
        if not isinstance(item, dict) or (key not in item and item.get(PATCH) != "replace"):
            raise StrategicMergeError(f"map: {item!r} does not contain declared merge key: {key}")
        if item.get(PATCH, "delete") not in ("delete", "replace"):
            raise StrategicMergeError("merging lists cannot yet be specified in the patch" if item[PATCH] == "merge"
                                      else f"unknown patch type: {item[PATCH]!r} (one of replace, delete)")
    plain = [item for item in patch if PATCH not in item]
    if any(item.get(PATCH) == "replace" for item in patch):
        return [_plain(item, spec.of) for item in plain]
    deleted = {_hashable(item[key]) for item in patch if item.get(PATCH) == "delete"}
    kept = [old for old in original if not (isinstance(old, dict) and _hashable(old.get(key)) in deleted)]
    by_key = {_hashable(old.get(key)): old for old in kept if isinstance(old, dict)}
    patched = [_merge_map(copy.deepcopy(by_key.get(_hashable(item[key]), {})), item, spec.of) or {}
               for item in plain]
    touched = {_hashable(item[key]) for item in plain}
    server_only = [old for old in kept if not (isinstance(old, dict) and _hashable(old.get(key)) in touched)]
    return _ordered(server_only, patched, [_identity(old, key) for old in original], key)


def _union(original: list[Any], patch: list[Any]) -> list[Any]:
    """A merged list of scalars: each value once, in apimachinery's order."""
    in_patch = [item for i, item in enumerate(patch) if item not in patch[:i]]
    return _ordered([item for item in original if item not in in_patch], in_patch, list(original), None)


def _identity(item: Any, key: str | None) -> Any:
    return _hashable(item.get(key)) if key is not None and isinstance(item, dict) else _hashable(item)


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _ordered(server_only: list[Any], patched: list[Any], server_order: list[Any], key: str | None) -> list[Any]:
    """apimachinery's `mergeSortedSlice`: the patch's items in the patch's order, the server-only items in the
    live order, interleaved where both are in the live list (an item goes before a patch item that comes
    after it there), else the patch's first."""
    def position(item: Any) -> int:
        identity = _identity(item, key)
        return server_order.index(identity) if identity in server_order else -1

    result, left, right = [], list(server_only), list(patched)
    while left and right:
        mine, theirs = position(left[0]), position(right[0])
        result.append(left.pop(0) if mine >= 0 and theirs >= 0 and mine < theirs else right.pop(0))
    return [*result, *left, *right]


def _plain(value: Mapping[str, Any], schema: Mapping[str, Field]) -> Object:
    """A map taken as it is (a replaced map or list item): its own directives still apply inside it."""
    merged = _merge_map({}, {k: v for k, v in value.items() if k != PATCH}, schema)
    return merged or {}


def _list(value: Any, directive: str) -> list[Any]:
    if not isinstance(value, list):
        raise StrategicMergeError(f"{directive} wants a list, not {value!r}")
    return value
