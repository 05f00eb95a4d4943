"""What a worker pod's status (importer or upload server) means for its PVC, as a pure function: the
annotations to write (pod phase, readiness, restarts, the Running condition), whether to delete the
pod (done, needs scratch, needs direct I/O, or failed fatally), the labels the work found (a registry
image's default instance type, from the termination message) and the Events to record. The
termination message is read with `cdi.contracts.termination`; a failure whose message says
`retryable: false` (or upstream's "checksum mismatch") is fatal and never retried; everything else
is left to the kubelet's restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers.meta import annotations_of

POD_RUNNING_REASON = "Pod is running"
SCRATCH_REASON = "Scratch space required"
SCRATCH_MESSAGE = "scratch space required and none found"


@dataclass(frozen=True)
class PodObservation:
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # for the PVC where it has none of that key yet
    delete_pod: bool = False
    complete: bool = False
    fatal: bool = False
    events: tuple[tuple[str, str, str], ...] = ()


IMPORT_SUCCESS = ("ImportSucceeded", "Import Successful")
UPLOAD_SUCCESS = ("UploadSucceeded", "Upload Successful")


def _container_status(pod: Object) -> dict[str, Any]:
    """Worker pods have one container."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return dict(statuses[0]) if statuses else {}


def _message(terminated: dict[str, Any] | None) -> TerminationMessage | None:
    if not terminated or not terminated.get("message"):
        return None
    return TerminationMessage.parse(str(terminated["message"]))


def _running(value: bool, reason: str, message: str) -> dict[str, str]:
    return {ann.ANN_RUNNING_CONDITION: "true" if value else "false",
            ann.ANN_RUNNING_CONDITION_REASON: reason, ann.ANN_RUNNING_CONDITION_MESSAGE: message}


def _is_fatal(message: TerminationMessage | None, exit_code: int) -> bool:
    if message is None:
        return False
    if "checksum mismatch" in message.message:
        return True
    return exit_code != 0 and message.retryable is False


def observe_importer(pvc: Object, pod: Object) -> PodObservation:
    return observe_worker(pvc, pod, IMPORT_SUCCESS)


def observe_worker(pvc: Object, pod: Object, success: tuple[str, str]) -> PodObservation:
    status = _container_status(pod)
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
    terminated = state.get("terminated")
    latest = terminated or last
    message = _message(latest)
    restarts = max(int(status.get("restartCount") or 0), int(annotations_of(pvc).get(ann.ANN_POD_RESTARTS) or 0))
    notes = {ann.ANN_POD_RESTARTS: str(restarts), ann.ANN_POD_READY: "true" if status.get("ready") else "false"}
    if any(t and t.get("reason") == "OOMKilled" for t in (terminated, last)):
        notes.update(_running(False, "OOMKilled", "importer was killed for using too much memory; retrying with "
                                                  "direct I/O"))
        return PodObservation({**notes, ann.ANN_REQUIRES_DIRECT_IO: "true"}, delete_pod=True)
    exit_code = int((terminated or {}).get("exitCode", -1)) if terminated else -1
    if terminated and exit_code == 0 and message and message.scratch_space_required:
        notes.update(_running(False, SCRATCH_REASON, message.message if message.message.startswith(SCRATCH_MESSAGE)
                              else SCRATCH_MESSAGE))
        return PodObservation({**notes, ann.ANN_REQUIRES_SCRATCH: "true"}, delete_pod=True)
    if latest and message and _is_fatal(message, int(latest.get("exitCode", 0))):
        reason = message.reason or "ChecksumError"
        notes.update(_running(False, reason, message.message))
        notes.update({ann.ANN_IMPORT_FATAL_ERROR: "true", ann.ANN_POD_PHASE: "Failed"})
        return PodObservation(notes, delete_pod=True, fatal=True,
                              events=(("Warning", reason, message.message),))
    phase = str((pod.get("status") or {}).get("phase") or "Pending")
    notes[ann.ANN_POD_PHASE] = phase
    notes.update(_condition(state, last, message))
    if _unschedulable(pod):
        notes[ann.ANN_POD_SCHEDULABLE] = "false"
    events: list[tuple[str, str, str]] = []
    old_restarts = int(annotations_of(pvc).get(ann.ANN_POD_RESTARTS) or 0)
    if last and int(last.get("exitCode", 0)) != 0 and restarts > old_restarts:
        text = message.message if message else str(last.get("reason", "Error"))
        events.append(("Warning", "ErrImportFailed", text))
    if phase == "Succeeded":
        if message and message.preallocation_applied:
            notes[ann.ANN_PREALLOCATION_APPLIED] = "true"
        retain = annotations_of(pvc).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) == "true"
        events.append(("Normal", *success))
        return PodObservation(notes, labels=dict(message.labels) if message else {}, delete_pod=not retain,
                              complete=True, events=tuple(events))
    return PodObservation(notes, events=tuple(events))


def _condition(state: dict[str, Any], last: dict[str, Any] | None,
               message: TerminationMessage | None) -> dict[str, str]:
    if "running" in state:
        return _running(True, POD_RUNNING_REASON, "")
    if terminated := state.get("terminated"):
        return _running(False, (message.reason if message and message.reason and terminated.get("exitCode") else None)
                        or str(terminated.get("reason") or "Completed"), message.message if message else "")
    waiting = state.get("waiting") or {}
    if last and message:
        return _running(False, message.reason or str(last.get("reason") or "Error"), message.message)
    return _running(False, str(waiting.get("reason") or "Pending"), str(waiting.get("message") or ""))


def _unschedulable(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in conditions)
