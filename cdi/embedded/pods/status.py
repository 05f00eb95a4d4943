"""A pod's status exactly as kubelet writes it, computed purely from what its containers are doing.

Each container is `Waiting` (ContainerCreating, CrashLoopBackOff, CreateContainerConfigError),
`Running` or `Terminated`, with the previous run's termination as `lastState`. A termination has
kubelet's fields: exitCode (128+n for a process killed by signal n), `signal` when known, reason
(Completed, Error, OOMKilled, StartError) and the termination message. From these,
`pod_phase` follows kubelet's getPhase (a terminal phase never changes back), and `pod_status`
builds `phase`, the conditions (Initialized, Ready, ContainersReady, and the scheduler's
PodScheduled, each keeping its lastTransitionTime while its status holds), `hostIP`/`podIP`(s),
`startTime` and `containerStatuses` in spec order. The runner writes the result with
`update_status` when it differs from the stored status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdi.embedded.pods.node import HOST_IP
from cdi.embedded.pods.restarts import RESTART_ALWAYS, RESTART_NEVER

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL = (SUCCEEDED, FAILED)
CONTAINER_CREATING = "ContainerCreating"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
CONFIG_ERROR = "CreateContainerConfigError"


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str
    container_id: str = ""
    signal: int = 0  # the signal that killed the process, when the runner knows it (0: none / unknown)

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"exitCode": self.exit_code}
        if self.signal:
            state["signal"] = self.signal
        state["reason"] = self.reason
        if self.message:
            state["message"] = self.message
        state |= {"startedAt": self.started_at, "finishedAt": self.finished_at}
        if self.container_id:
            state["containerID"] = self.container_id
        return state

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Terminated:
        return cls(int(raw.get("exitCode") or 0), str(raw.get("reason") or ""), str(raw.get("message") or ""),
                   str(raw.get("startedAt") or ""), str(raw.get("finishedAt") or ""), str(raw.get("containerID") or ""),
                   int(raw.get("signal") or 0))


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerView:
    name: str
    image: str
    state: State
    last: Terminated | None = None
    restart_count: int = 0
    container_id: str = ""

    @property
    def ready(self) -> bool:
        return isinstance(self.state, Running)  # no readiness probes: running is ready

    def to_dict(self) -> dict[str, Any]:
        status: dict[str, Any] = {"name": self.name, "state": _state(self.state),
                                  "lastState": {"terminated": self.last.to_dict()} if self.last else {},
                                  "ready": self.ready, "restartCount": self.restart_count, "image": self.image,
                                  "imageID": "", "started": isinstance(self.state, Running)}
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _state(state: State) -> dict[str, Any]:
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    if isinstance(state, Terminated):
        return {"terminated": state.to_dict()}
    return {"waiting": {"reason": state.reason, **({"message": state.message} if state.message else {})}}


def pod_phase(policy: str, containers: Sequence[ContainerView], previous: str = "", terminating: bool = False) -> str:
    """kubelet's getPhase; `terminating` (the pod is deleted and its containers stopped) forces a
    terminal phase, as kubelet does before it lets the pod go."""
    if previous in TERMINAL:
        return previous
    waiting = running = stopped = succeeded = 0
    for container in containers:
        if isinstance(container.state, Running):
            running += 1
        elif isinstance(container.state, Terminated):
            stopped += 1
            succeeded += container.state.exit_code == 0
        elif container.last is not None:
            stopped += 1  # restarting after a termination
        else:
            waiting += 1
    if terminating and not running:
        return SUCCEEDED if containers and succeeded == len(containers) else FAILED
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if not stopped:
        return PENDING
    if policy == RESTART_ALWAYS:
        return RUNNING
    if stopped == succeeded:
        return SUCCEEDED
    return FAILED if policy == RESTART_NEVER else RUNNING


def pod_status(previous: Mapping[str, Any], phase: str, containers: Sequence[ContainerView], *, pod_ip: str,
               start_time: str, now: str) -> dict[str, Any]:
    """The whole status object: fields kubelet owns are recomputed, the rest of `previous` kept."""
    status = {k: v for k, v in previous.items() if k not in ("message", "reason", "nominatedNodeName")}
    conditions = _conditions(phase, containers)
    old = {c.get("type"): c for c in previous.get("conditions") or ()}
    merged = [_keep_transition(c, old.get(c["type"]), now) for c in conditions]
    merged += [c for c in previous.get("conditions") or () if c.get("type") == "PodScheduled"]
    status |= {"phase": phase, "conditions": merged, "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}]}
    if pod_ip:
        status |= {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}
    if start_time:
        status["startTime"] = start_time
    status["containerStatuses"] = [c.to_dict() for c in containers]
    return status


def scheduled_condition(status: str, now: str, reason: str = "", message: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "PodScheduled", "status": status, "lastProbeTime": None,
                                 "lastTransitionTime": now}
    if reason:
        condition |= {"reason": reason, "message": message}
    return condition


def _conditions(phase: str, containers: Sequence[ContainerView]) -> list[dict[str, Any]]:
    initialized: dict[str, Any] = {"type": "Initialized", "status": "True"}
    unready = [c.name for c in containers if not c.ready]
    if phase == SUCCEEDED:
        initialized["reason"] = "PodCompleted"
        ready: dict[str, Any] = {"status": "False", "reason": "PodCompleted"}
    elif unready:
        ready = {"status": "False", "reason": "ContainersNotReady",
                 "message": f"containers with unready status: [{' '.join(unready)}]"}
    else:
        ready = {"status": "True"}
    return [initialized, {"type": "Ready", **ready}, {"type": "ContainersReady", **ready}]


def _keep_transition(condition: dict[str, Any], old: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    same = old is not None and old.get("status") == condition["status"]
    moment = old.get("lastTransitionTime") if same and old is not None else now
    return {"type": condition.pop("type"), "status": condition.pop("status"), "lastProbeTime": None,
            "lastTransitionTime": moment, **condition}
