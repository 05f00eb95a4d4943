"""Admission of PersistentVolumeClaims: what Kubernetes' validation and its resize plugin refuse.

On create, `spec.resources.requests.storage` must be a quantity greater than zero and no larger than
a volume can be (2^63-1 bytes), and at least one access mode is required. On update of the spec
(status writes are not checked), a claim's spec is immutable except: `volumeName` may be set once
(binding), `storageClassName` may be set when it was unset (default class assignment), and a bound
claim's storage request may grow — never shrink — when its StorageClass has
`allowVolumeExpansion: true` (the PersistentVolumeClaimResize admission plugin's rule, answered with
`Forbidden`). Messages are the API server's.
"""

from __future__ import annotations

import copy
from typing import Any

from cdi.admission.request import AdmissionRequest, Lookup
from cdi.cluster.errors import Forbidden, Invalid
from cdi.cluster.protocol import Object
from cdi.quantity import QuantityError, parse_quantity

MAX_BYTES = 2**63 - 1
_STORAGE_PATH = "spec.resources.requests.storage"


def admit_claim(request: AdmissionRequest, lookup: Lookup) -> None:
    if (request.kind.group, request.kind.kind) != ("", "PersistentVolumeClaim") or request.is_status:
        return
    new_spec = request.object.get("spec") or {}
    if request.old_object is None:
        problems = _creation_problems(new_spec)
        if problems:
            raise Invalid(_invalid(request, problems), causes=problems)
        return
    old = request.old_object
    old_spec = old.get("spec") or {}
    _check_immutable(request, old, old_spec, new_spec)
    old_size, new_size = _storage(old_spec), _storage(new_spec)
    if old_size is None or new_size is None or new_size == old_size:
        return
    if new_size < old_size:
        problem = f"{_STORAGE_PATH}: Forbidden: field can not be less than previous value"
        raise Invalid(_invalid(request, [problem]), causes=[problem])
    size_problems = _size_problems(new_spec)
    if size_problems:
        raise Invalid(_invalid(request, size_problems), causes=size_problems)
    if not _class_allows_expansion(new_spec, lookup):
        raise Forbidden(f'persistentvolumeclaims "{request.name}" is forbidden: only dynamically provisioned pvc '
                        "can be resized and the storageclass that provisions the pvc must support resize")


def _creation_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    if not spec.get("accessModes"):
        problems.append("spec.accessModes: Required value: at least 1 access mode is required")
    return problems + _size_problems(spec)


def _size_problems(spec: dict[str, Any]) -> list[str]:
    value = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if value is None:
        return ["spec.resources[storage]: Required value"]
    try:
        size = parse_quantity(value if isinstance(value, int) else str(value))
    except QuantityError as e:
        return [f'spec.resources[storage]: Invalid value: "{value}": {e}']
    if size <= 0:
        return [f'spec.resources[storage]: Invalid value: "{value}": must be greater than zero']
    if size > MAX_BYTES:
        return [f'spec.resources[storage]: Invalid value: "{value}": must be at most 8Ei (2^63-1 bytes)']
    return []


def _check_immutable(request: AdmissionRequest, old: Object, old_spec: dict[str, Any],
                     new_spec: dict[str, Any]) -> None:
    """`Invalid` when the update changes anything a claim allows no change to."""
    allowed = copy.deepcopy(old_spec)
    if not old_spec.get("volumeName") and "volumeName" in new_spec:
        allowed["volumeName"] = new_spec["volumeName"]
    if old_spec.get("storageClassName") is None and "storageClassName" in new_spec:
        allowed["storageClassName"] = new_spec["storageClassName"]
    if (old.get("status") or {}).get("phase") == "Bound" and _storage(new_spec) is not None:
        allowed.setdefault("resources", {}).setdefault("requests", {})["storage"] = \
            new_spec["resources"]["requests"]["storage"]
    if "volumeAttributesClassName" in new_spec:
        allowed["volumeAttributesClassName"] = new_spec["volumeAttributesClassName"]
    if allowed != new_spec:
        problem = ("spec: Forbidden: spec is immutable after creation except resources.requests and "
                   "volumeAttributesClassName for bound claims")
        raise Invalid(_invalid(request, [problem]), causes=[problem])


def _storage(spec: dict[str, Any]) -> int | None:
    value = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    try:
        return None if value is None else parse_quantity(value if isinstance(value, int) else str(value))
    except QuantityError:
        return None


def _class_allows_expansion(spec: dict[str, Any], lookup: Lookup) -> bool:
    name = spec.get("storageClassName")
    storage_class = lookup("storage.k8s.io", "StorageClass", str(name), None) if name else None
    return bool(storage_class and storage_class.get("allowVolumeExpansion") is True)


def _invalid(request: AdmissionRequest, problems: list[str]) -> str:
    listed = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    return f'PersistentVolumeClaim "{request.name}" is invalid: {listed}'
