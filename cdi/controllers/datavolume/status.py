"""A DataVolume's status as a pure function of what was observed: the phase (Pending,
WaitForFirstConsumer, PVCBound, then the operation's own phases — ImportScheduled/ImportInProgress or
UploadScheduled/UploadReady — and Succeeded/Failed), the three conditions Ready/Bound/Running with
upstream's reasons and messages, restartCount and progress, plus the Events a transition deserves;
ours, a fourth condition `Stalled` once a transfer stalled (`Observed.stall`, decided by
`cdi.controllers.progresswatch`).
What differs between import and upload is one `Operation` value; the DataVolume controllers apply the
result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts.metrics import format_progress
from cdi.controllers.meta import annotations_of, find_condition, name_of
from cdi.controllers.progresswatch import STALLED, StallPlan

TOO_SMALL = "DataVolume too small to contain image"
_TOO_SMALL_REASONS = ("ImageTooLarge", "NoSpace")
_TOO_SMALL_TEXTS = ("is larger than the reported available", "no space left on device",
                    "file largest block is bigger than maxblock", "disk quota exceeded")


@dataclass(frozen=True)
class Operation:
    """What one kind of DataVolume operation adds to the common status rules."""

    in_flight: tuple[str, ...]
    worker_phase: Callable[[dict[str, str], str], str]  # PVC annotations, previous phase → phase (PVC bound)
    transitions: dict[str, tuple[str, str, str]]  # phase → (type, reason, message with {claim} and {message})
    reports_progress: bool
    # For claims a populator fills: PVC annotations, previous phase → phase, consulted while the claim
    # is not yet bound too (its volume arrives at the end); None leaves the common rules to decide.
    populated_phase: Callable[[dict[str, str], str], str | None] | None = None


def _import_phase(notes: dict[str, str], previous: str) -> str:
    pod_phase = notes.get(ann.ANN_POD_PHASE)
    if pod_phase == "Running":
        return "ImportInProgress"
    if pod_phase == "Failed":
        return previous if previous in IMPORT.in_flight else "ImportScheduled"
    if pod_phase == "Pending" or notes.get(ann.ANN_IMPORT_POD):
        return "ImportScheduled"
    return "PVCBound"


def _upload_phase(notes: dict[str, str], previous: str) -> str:
    pod_phase = notes.get(ann.ANN_POD_PHASE)
    if pod_phase == "Running" and notes.get(ann.ANN_POD_READY) == "true":
        return "UploadReady"
    if pod_phase == "Failed":
        return previous if previous in UPLOAD.in_flight else "UploadScheduled"
    if ann.ANN_UPLOAD_REQUEST in notes:
        return "UploadScheduled"
    return "PVCBound"


IMPORT = Operation(
    in_flight=("ImportScheduled", "ImportInProgress"),
    worker_phase=_import_phase,
    transitions={"ImportScheduled": ("Normal", "ImportScheduled", "Import into {claim} scheduled"),
                 "ImportInProgress": ("Normal", "ImportInProgress", "Import into {claim} in progress"),
                 "Succeeded": ("Normal", "ImportSucceeded", "Successfully imported into PVC {claim}"),
                 "Failed": ("Warning", "ImportFailed", "Failed to import into PVC {claim}: {message}")},
    reports_progress=True,
)
UPLOAD = Operation(
    in_flight=("UploadScheduled", "UploadReady"),
    worker_phase=_upload_phase,
    transitions={"UploadScheduled": ("Normal", "UploadScheduled", "Upload into {claim} scheduled"),
                 "UploadReady": ("Normal", "UploadReady", "Upload into {claim} ready"),
                 "Succeeded": ("Normal", "UploadSucceeded", "Successfully uploaded into {claim}"),
                 "Failed": ("Warning", "UploadFailed", "Upload into {claim} failed: {message}")},
    reports_progress=False,
)


@dataclass(frozen=True)
class Observed:
    dv: Object
    pvc: Object | None
    wait_for_first_consumer: bool
    progress: float | None
    problem: tuple[str, str] | None  # (reason, message) when the claim could not be made
    now: str
    # Ours: the `Stalled` condition (`cdi.controllers.progresswatch`); None or a plan without a condition
    # keeps whatever the DataVolume has (a DataVolume that never stalled has no such condition).
    stall: StallPlan | None = None


@dataclass(frozen=True)
class StatusPlan:
    status: dict[str, Any]
    events: tuple[tuple[str, str, str], ...]


def simplify(reason: str, message: str) -> str:
    """Upstream's known-message table: out-of-space failures read "DataVolume too small to contain image"."""
    if reason in _TOO_SMALL_REASONS or any(text in message for text in _TOO_SMALL_TEXTS):
        return TOO_SMALL
    return message


def _phase(obs: Observed, previous: str, op: Operation) -> str:
    pvc = obs.pvc
    if pvc is None:
        return previous if previous in ("Succeeded", "Failed") else "Pending"
    notes = annotations_of(pvc)
    claim_phase = (pvc.get("status") or {}).get("phase")
    if claim_phase == "Lost":
        return "Failed"
    if notes.get(ann.ANN_IMPORT_FATAL_ERROR) == "true":
        return "Failed"
    if op.populated_phase is not None and (populated := op.populated_phase(notes, previous)) is not None:
        return populated
    if claim_phase != "Bound":
        immediate = notes.get(ann.ANN_IMMEDIATE_BINDING) == "true"
        return "WaitForFirstConsumer" if obs.wait_for_first_consumer and not immediate else "Pending"
    if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
        return "Succeeded"
    return op.worker_phase(notes, previous)


def _bound(obs: Observed) -> tuple[str, str, str]:
    pvc = obs.pvc
    if pvc is None:
        return "False", "NotFound", "No PVC found"
    name, claim_phase = name_of(pvc), (pvc.get("status") or {}).get("phase")
    if claim_phase == "Bound":
        return "True", "Bound", f"PVC {name} Bound"
    if claim_phase == "Lost":
        return "False", "ClaimLost", "Claim Lost"
    notes = annotations_of(pvc)
    if notes.get(ann.ANN_BOUND_CONDITION_REASON):
        return ("False", notes[ann.ANN_BOUND_CONDITION_REASON],
                f"target PVC {name} Pending and {notes.get(ann.ANN_BOUND_CONDITION_MESSAGE, '')}")
    return "False", "Pending", f"PVC {name} Pending"


def _running(obs: Observed, phase: str) -> tuple[str, str, str]:
    notes = annotations_of(obs.pvc) if obs.pvc is not None else {}
    if ann.ANN_RUNNING_CONDITION not in notes:
        return "False", "", ""
    reason = notes.get(ann.ANN_RUNNING_CONDITION_REASON, "")
    message = simplify(reason, notes.get(ann.ANN_RUNNING_CONDITION_MESSAGE, ""))
    if phase == "Succeeded":
        return "False", "Completed", ""
    return ("True" if notes[ann.ANN_RUNNING_CONDITION] == "true" else "False"), reason, message


def _condition(previous: list[dict[str, Any]], type_: str, value: tuple[str, str, str], now: str) -> dict[str, Any]:
    status, reason, message = value
    old = find_condition(previous, type_)
    same = old is not None and (old.get("status"), old.get("reason", ""), old.get("message", "")) == value
    stamp = str(old.get("lastTransitionTime")) if same and old and old.get("lastTransitionTime") else now
    heartbeat = str(old.get("lastHeartbeatTime")) if same and old and old.get("lastHeartbeatTime") else now
    condition: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": stamp,
                                 "lastHeartbeatTime": heartbeat}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _progress(obs: Observed, phase: str, previous: dict[str, Any], op: Operation) -> str:
    if phase == "Succeeded":
        return "100.0%"
    if not op.reports_progress:
        return "N/A"
    if obs.progress is not None and phase == op.in_flight[-1]:
        return format_progress(obs.progress)
    old = previous.get("progress")
    return str(old) if old and phase in op.in_flight else "N/A"


def import_status(obs: Observed) -> StatusPlan:
    return dv_status(obs, IMPORT)


def dv_status(obs: Observed, op: Operation) -> StatusPlan:
    previous: dict[str, Any] = dict(obs.dv.get("status") or {})
    old_phase = str(previous.get("phase") or "")
    phase = _phase(obs, old_phase, op)
    bound, running = _bound(obs), _running(obs, phase)
    ready_reason, ready_message = obs.problem or (("TransferRunning", "") if running[0] == "True" else ("", ""))
    ready = ("True" if phase == "Succeeded" else "False", ready_reason, ready_message)
    conditions = previous.get("conditions") or []
    status: dict[str, Any] = {
        "phase": phase,
        "progress": _progress(obs, phase, previous, op),
        "restartCount": int(annotations_of(obs.pvc).get(ann.ANN_POD_RESTARTS) or 0) if obs.pvc else
        int(previous.get("restartCount") or 0),
        "conditions": [_condition(conditions, "Ready", ready, obs.now), _condition(conditions, "Bound", bound, obs.now),
                       _condition(conditions, "Running", running, obs.now)],
    }
    if stalled := _stalled(obs, conditions):
        status["conditions"].append(stalled)
    if obs.pvc is not None:
        status["claimName"] = name_of(obs.pvc)
    events = _events(obs, op, old_phase, phase, conditions, bound, running)
    if obs.stall is not None and obs.stall.event is not None:
        events = (*events, obs.stall.event)
    return StatusPlan(status, events)


def _stalled(obs: Observed, conditions: list[dict[str, Any]]) -> dict[str, Any] | None:
    if obs.stall is not None and obs.stall.condition is not None:
        return _condition(conditions, STALLED, obs.stall.condition, obs.now)
    old = find_condition(conditions, STALLED)
    return dict(old) if old is not None else None


def _events(obs: Observed, op: Operation, old_phase: str, phase: str, conditions: list[dict[str, Any]],
            bound: tuple[str, str, str], running: tuple[str, str, str]) -> tuple[tuple[str, str, str], ...]:
    claim = name_of(obs.pvc) if obs.pvc is not None else name_of(obs.dv)
    events: list[tuple[str, str, str]] = []
    old_bound = find_condition(conditions, "Bound") or {}
    if bound[0] == "True" and old_bound.get("status") != "True":
        events.append(("Normal", "Bound", bound[2]))
    if obs.problem and (find_condition(conditions, "Ready") or {}).get("message") != obs.problem[1]:
        events.append(("Warning", obs.problem[0], obs.problem[1]))
    old_running = find_condition(conditions, "Running") or {}
    if (running[0] == "False" and running[1] not in ("", "Completed", "Scratch space required", "Pending")
            and (old_running.get("reason"), old_running.get("message", "")) != (running[1], running[2])):
        events.append(("Warning", running[1], running[2]))
    restarts = int(annotations_of(obs.pvc).get(ann.ANN_POD_RESTARTS) or 0) if obs.pvc is not None else 0
    failure = annotations_of(obs.pvc).get(ann.ANN_POD_LAST_FAILURE) if obs.pvc is not None else None
    if failure and restarts > int((obs.dv.get("status") or {}).get("restartCount") or 0):
        # The worker restarted since the last look: say why its previous run ended (killed, failed).
        events.append(("Warning", "ErrImportFailed", f"{failure} (restart {restarts})"))
    if phase != old_phase and phase in op.transitions:
        type_, reason, template = op.transitions[phase]
        events.append((type_, reason, template.format(claim=claim, message=running[2])))
    return tuple(events)
