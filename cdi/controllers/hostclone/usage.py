"""Which pods use a PVC read-write: upstream's `GetPodsUsingPVCs(..., allowReadOnly=true)`, which the
clone controller consults before it starts a source pod (`CloneSourceInUse`). A pod counts while it is
not finished and mounts the claim without `readOnly` (on the volume or on every mount of it); clone
source pods, which only read, never count. Pure; used by `cdi.controllers.hostclone.controller`."""

from __future__ import annotations

from collections.abc import Iterable

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.meta import labels_of, name_of, namespace_of


def _writes(pod: Object, volume_name: str) -> bool:
    uses = [m for c in (pod.get("spec") or {}).get("containers") or []
            for m in [*(c.get("volumeMounts") or []), *(c.get("volumeDevices") or [])] if m.get("name") == volume_name]
    return not uses or any(not m.get("readOnly") for m in uses)


def uses_read_write(pod: Object, claim: str) -> bool:
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if labels_of(pod).get(ann.LABEL_COMPONENT) == ann.Component.CLONE_SOURCE.value:
        return False
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        source = volume.get("persistentVolumeClaim") or {}
        if source.get("claimName") == claim and not source.get("readOnly") and _writes(pod, str(volume.get("name"))):
            return True
    return False


def pods_using(pods: Iterable[Object], claim: str) -> tuple[str, ...]:
    """"<namespace>/<name>" of every pod using `claim` read-write, sorted."""
    return tuple(sorted(f"{namespace_of(p)}/{name_of(p)}" for p in pods if uses_read_write(p, claim)))
