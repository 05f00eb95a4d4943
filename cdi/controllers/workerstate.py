"""What a worker pod's status (importer or upload server) means for its PVC, as a pure function: the
annotations to write (pod phase, readiness, restarts, the Running condition), whether to delete the
pod (done, needs scratch, needs direct I/O, or failed fatally), the labels the work found (a registry
image's default instance type, from the termination message) and the Events to record. The
termination message is read with `cdi.contracts.termination`; a failure whose message says
`retryable: false` (or upstream's "checksum mismatch") is fatal and never retried; everything else
is left to the kubelet's restarts. An importer that continued (or had to start over) an earlier
attempt says so in the message (`resumeDecision`), which becomes an `ImportResumed` (Normal) or
`ImportStartedOver` (Warning) event.

A worker killed by a signal (exit code 128+n, or the status's `signal`) wrote no termination message,
so what kubelet shows instead is the end of its log, which says nothing about why it stopped. Unless
the worker did leave a message with a reason, the condition and event then say what happened:
"Importer pod importer-foo was killed (exit code 137, SIGKILL)". A kill is never fatal: the restart
is the retry."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers.meta import annotations_of, labels_of, name_of

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
WORKER_TITLES = {ann.Component.IMPORTER.value: "Importer pod", ann.Component.UPLOAD_SERVER.value: "Upload server pod"}
UPLOAD_SUCCESS = ("UploadSucceeded", "Upload Successful")
RESUME_EVENTS = {"Resumed": ("Normal", "ImportResumed"), "StartedOver": ("Warning", "ImportStartedOver")}


def resume_event(message: TerminationMessage | None) -> tuple[tuple[str, str, str], ...]:
    """The event for an importer's decision about an earlier attempt's checkpoint, if it made one."""
    if message is None or message.resume_decision not in RESUME_EVENTS:
        return ()
    kind, reason = RESUME_EVENTS[message.resume_decision]
    return ((kind, reason, message.resume_message or message.resume_decision),)


def _container_status(pod: Object) -> dict[str, Any]:
    """Worker pods have one container."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return dict(statuses[0]) if statuses else {}


def _message(terminated: dict[str, Any] | None) -> TerminationMessage | None:
    if not terminated or not terminated.get("message"):
        return None
    return TerminationMessage.parse(str(terminated["message"]))


def killed_by(terminated: dict[str, Any] | None) -> int | None:
    """The signal that ended a container: the status's `signal` when the runtime says, else an exit
    code of 128+n (how container runtimes report a process killed by signal n)."""
    if not terminated:
        return None
    if number := int(terminated.get("signal") or 0):
        return number
    code = int(terminated.get("exitCode") or 0)
    return code - 128 if 128 < code <= 128 + 64 else None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def kill_description(pod: Object, terminated: dict[str, Any], number: int) -> str:
    """"Importer pod importer-foo was killed (exit code 137, SIGKILL)", OOM kills said as such."""
    title = WORKER_TITLES.get(labels_of(pod).get(ann.LABEL_COMPONENT, ""), "Worker pod")
    how = "was killed for using too much memory" if terminated.get("reason") == "OOMKilled" else "was killed"
    code = int(terminated.get("exitCode") or 128 + number)
    return f"{title} {name_of(pod)} {how} (exit code {code}, {signal_name(number)})"


def _kill_message(pod: Object, terminated: dict[str, Any] | None,
                  message: TerminationMessage | None) -> TerminationMessage | None:
    """What to show for a killed worker, unless it left a message with a reason of its own."""
    number = killed_by(terminated)
    if terminated is None or number is None or (message is not None and message.reason):
        return None
    return TerminationMessage(message=kill_description(pod, terminated, number))


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
    message = _kill_message(pod, latest, message) or message
    restarts = max(int(status.get("restartCount") or 0), int(annotations_of(pvc).get(ann.ANN_POD_RESTARTS) or 0))
    notes = {ann.ANN_POD_RESTARTS: str(restarts), ann.ANN_POD_READY: "true" if status.get("ready") else "false"}
    if oom := next((t for t in (terminated, last) if t and t.get("reason") == "OOMKilled"), None):
        notes.update(_running(False, "OOMKilled", f"{kill_description(pod, oom, killed_by(oom) or 9)}; retrying "
                                                  f"with direct I/O"))
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
        events.extend(resume_event(message))
        events.append(("Warning", "ErrImportFailed", text))
        notes[ann.ANN_POD_LAST_FAILURE] = text
    if phase == "Succeeded":
        if message and message.preallocation_applied:
            notes[ann.ANN_PREALLOCATION_APPLIED] = "true"
        retain = annotations_of(pvc).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) == "true"
        events.extend(resume_event(message))
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
