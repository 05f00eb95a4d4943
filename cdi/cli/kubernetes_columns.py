"""kubectl's built-in columns for Kubernetes' own kinds, one pure cell function each.

Each function takes an object (a plain document) and the current time and returns the cell kubectl's
printers (k8s.io/kubernetes/pkg/printers/internalversion) would show; `cdi.cli.columns` arranges them
into tables. Access modes are abbreviated RWO/ROX/RWX/RWOP in kubectl's fixed order, terminating objects
show "Terminating", and a pod's STATUS follows kubectl's reading of its container states.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdi.cli.ages import since
from cdi.cluster.protocol import Object
from cdi.contracts.annotations import ANN_DEFAULT_STORAGE_CLASS

_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))
_BETA_DEFAULT_STORAGE_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
_NONE = "<none>"


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _deleting(obj: Object) -> bool:
    return bool(_get(obj, "metadata", "deletionTimestamp"))


def access_modes(modes: Any) -> str:
    """["ReadWriteMany", "ReadWriteOnce"] -> "RWO,RWX", as kubectl abbreviates and orders them."""
    present = set(modes) if isinstance(modes, list) else set()
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def volume_mode(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "spec", "volumeMode")) or "<unset>"


def pvc_status(obj: Object, _now: datetime) -> str:
    return "Terminating" if _deleting(obj) else _text(_get(obj, "status", "phase"))


def pvc_volume(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "spec", "volumeName"))


def pvc_capacity(obj: Object, _now: datetime) -> str:
    """Only a bound claim has a capacity (the volume's), as in kubectl."""
    return _text(_get(obj, "status", "capacity", "storage")) if pvc_volume(obj, _now) else ""


def pvc_access_modes(obj: Object, _now: datetime) -> str:
    return access_modes(_get(obj, "status", "accessModes")) if pvc_volume(obj, _now) else ""


def pvc_storage_class(obj: Object, _now: datetime) -> str:
    beta = _get(obj, "metadata", "annotations", _BETA_STORAGE_CLASS)
    return _text(beta if beta is not None else _get(obj, "spec", "storageClassName"))


def pv_capacity(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "spec", "capacity", "storage"))


def pv_access_modes(obj: Object, _now: datetime) -> str:
    return access_modes(_get(obj, "spec", "accessModes"))


def pv_reclaim_policy(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "spec", "persistentVolumeReclaimPolicy"))


def pv_status(obj: Object, _now: datetime) -> str:
    return "Terminating" if _deleting(obj) else _text(_get(obj, "status", "phase"))


def pv_claim(obj: Object, _now: datetime) -> str:
    ref = _get(obj, "spec", "claimRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        return ""
    return f"{ref.get('namespace', '')}/{ref['name']}"


def pv_storage_class(obj: Object, _now: datetime) -> str:
    beta = _get(obj, "metadata", "annotations", _BETA_STORAGE_CLASS)
    return _text(beta if beta is not None else _get(obj, "spec", "storageClassName"))


def pv_reason(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "status", "reason"))


def _statuses(obj: Object, field: str) -> list[dict[str, Any]]:
    value = _get(obj, "status", field)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def pod_ready(obj: Object, _now: datetime) -> str:
    containers = _get(obj, "spec", "containers")
    total = len(containers) if isinstance(containers, list) else 0
    ready = sum(1 for status in _statuses(obj, "containerStatuses")
                if status.get("ready") and _get(status, "state", "running") is not None)
    return f"{ready}/{total}"


def _terminated_reason(terminated: dict[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _init_reason(obj: Object) -> str | None:
    """The STATUS while init containers run or after one failed; None once they all succeeded."""
    statuses = _statuses(obj, "initContainerStatuses")
    total = len(_get(obj, "spec", "initContainers") or [])
    for index, status in enumerate(statuses):
        terminated, waiting = _get(status, "state", "terminated"), _get(status, "state", "waiting")
        if isinstance(terminated, dict) and terminated.get("exitCode", 0) == 0:
            continue
        if isinstance(terminated, dict):
            return _terminated_reason(terminated, "Init:")
        if isinstance(waiting, dict) and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"Init:{waiting['reason']}"
        return f"Init:{index}/{total}"
    return None


def pod_status(obj: Object, _now: datetime) -> str:
    reason = _text(_get(obj, "status", "reason")) or _text(_get(obj, "status", "phase"))
    init = _init_reason(obj)
    if init is not None:
        reason = init
    else:
        running = False
        for status in reversed(_statuses(obj, "containerStatuses")):
            terminated, waiting = _get(status, "state", "terminated"), _get(status, "state", "waiting")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, dict):
                reason = _terminated_reason(terminated)
            elif status.get("ready") and _get(status, "state", "running") is not None:
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    phase = _get(obj, "status", "phase")
    if _deleting(obj) and _get(obj, "status", "reason") == "NodeLost":
        return "Unknown"
    if _deleting(obj) and phase not in ("Succeeded", "Failed"):
        return "Terminating"
    return reason


def pod_restarts(obj: Object, now: datetime) -> str:
    """The restart count, with how long ago the last restart was (kubectl: "2 (5m ago)")."""
    statuses = _statuses(obj, "containerStatuses")
    restarts = sum(int(status.get("restartCount") or 0) for status in statuses)
    finished = [str(_get(status, "lastState", "terminated", "finishedAt")) for status in statuses
                if _get(status, "lastState", "terminated", "finishedAt")]
    if restarts and finished:
        return f"{restarts} ({since(max(finished), now)} ago)"
    return str(restarts)


def pod_ip(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "status", "podIP")) or _NONE


def pod_node(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "spec", "nodeName")) or _NONE


def pod_nominated_node(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "status", "nominatedNodeName")) or _NONE


def pod_readiness_gates(obj: Object, _now: datetime) -> str:
    gates = _get(obj, "spec", "readinessGates")
    if not isinstance(gates, list) or not gates:
        return _NONE
    conditions = {c.get("type"): c.get("status") for c in _statuses(obj, "conditions")}
    ready = sum(1 for gate in gates if conditions.get(_get(gate, "conditionType")) == "True")
    return f"{ready}/{len(gates)}"


def is_default_storage_class(obj: Object) -> bool:
    annotations = _get(obj, "metadata", "annotations") or {}
    return "true" in (annotations.get(ANN_DEFAULT_STORAGE_CLASS), annotations.get(_BETA_DEFAULT_STORAGE_CLASS))


def storage_class_name(obj: Object, _now: datetime) -> str:
    name = _text(_get(obj, "metadata", "name"))
    return f"{name} (default)" if is_default_storage_class(obj) else name


def sc_provisioner(obj: Object, _now: datetime) -> str:
    return _text(obj.get("provisioner"))


def sc_reclaim_policy(obj: Object, _now: datetime) -> str:
    return _text(obj.get("reclaimPolicy")) or "Delete"


def sc_binding_mode(obj: Object, _now: datetime) -> str:
    return _text(obj.get("volumeBindingMode")) or "Immediate"


def sc_expansion(obj: Object, _now: datetime) -> str:
    return "true" if obj.get("allowVolumeExpansion") is True else "false"


def event_last_seen(obj: Object, now: datetime) -> str:
    series_time = _get(obj, "series", "lastObservedTime")
    return since(series_time or obj.get("lastTimestamp") or obj.get("eventTime"), now)


def event_first_seen(obj: Object, now: datetime) -> str:
    return since(obj.get("firstTimestamp") or obj.get("eventTime"), now)


def event_type(obj: Object, _now: datetime) -> str:
    return _text(obj.get("type"))


def event_reason(obj: Object, _now: datetime) -> str:
    return _text(obj.get("reason"))


def event_object(obj: Object, _now: datetime) -> str:
    return f"{_text(_get(obj, 'involvedObject', 'kind')).lower()}/{_text(_get(obj, 'involvedObject', 'name'))}"


def event_subobject(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "involvedObject", "fieldPath"))


def event_source(obj: Object, _now: datetime) -> str:
    """"component, host", falling back to the reporting controller and instance."""
    component = _text(_get(obj, "source", "component")) or _text(obj.get("reportingComponent"))
    host = _text(_get(obj, "source", "host")) or _text(obj.get("reportingInstance"))
    return f"{component}, {host}" if host else component


def event_message(obj: Object, _now: datetime) -> str:
    return _text(obj.get("message")).strip()


def event_count(obj: Object, _now: datetime) -> str:
    return str(obj.get("count") or 1)


def namespace_status(obj: Object, _now: datetime) -> str:
    return _text(_get(obj, "status", "phase"))
