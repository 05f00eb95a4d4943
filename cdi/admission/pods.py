"""Admission of Pod updates: a pod's spec is immutable, as the API server's validation has it.

Only a few fields may change on an existing pod (container images, `activeDeadlineSeconds`, added
tolerations, removed scheduling gates, the grace period); `spec.nodeName` is set through a Binding
(`create` of a `v1` Binding), never by an update. Status writes are not checked.
"""

from __future__ import annotations

import copy
from typing import Any

from cdi.admission.request import AdmissionRequest
from cdi.cluster.errors import Invalid

_MESSAGE = ("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
            "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
            "previously negative)")


def admit_pod(request: AdmissionRequest) -> None:
    if (request.kind.group, request.kind.kind) != ("", "Pod") or request.is_status or request.old_object is None:
        return
    old, new = request.old_object.get("spec") or {}, request.object.get("spec") or {}
    if _comparable(old, new) != _comparable(new, new):
        raise Invalid(f'Pod "{request.name}" is invalid: {_MESSAGE}', causes=[_MESSAGE])


def _comparable(spec: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`spec` with the fields an update may change taken from `new`, so equal means allowed."""
    result = copy.deepcopy(spec)
    for field in ("containers", "initContainers"):
        for mine, theirs in zip(result.get(field) or [], new.get(field) or [], strict=False):
            if "image" in theirs:
                mine["image"] = theirs["image"]
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "schedulingGates"):
        if field in new:
            result[field] = new[field]
        else:
            result.pop(field, None)
    old_tolerations = result.get("tolerations") or []
    new_tolerations = new.get("tolerations") or []
    if new_tolerations[:len(old_tolerations)] == old_tolerations:
        result["tolerations"] = new_tolerations
    if not result.get("tolerations"):
        result.pop("tolerations", None)
    return result
