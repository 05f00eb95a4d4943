"""What the runner remembers about the pods it runs, and how it picks them up again after a restart.

A `PodRecord` per pod (by uid) holds a `ContainerRecord` per container: the live process, the run
that ended and has not been restarted yet (`exited`), the run before that (`last`, kubelet's
`lastState`), the restart count and the back-off entry. `view` turns a record into the
`status.ContainerView` kubelet would report, given the restart decision for it.

`adopt` rebuilds a record from a pod's stored status when the runner has none (it was restarted),
with what `reattach` found of the runs an earlier runner recorded (`Found`, by containerID): a run
that still goes on is picked up as it is (the container keeps running, restart count and all); one
that ended meanwhile is reported as it ended. A container the status shows running whose run cannot
be found (its shim was killed, or an earlier version of the runner took its processes with it) is
taken as terminated with exit code 137, signal 9, reason Error and "the pod runner restarted", and
listed in `lost` so that the runner SIGKILLs what is left of it; the restart policy applies to it
like to any other exit. A crash-looping container restarts at once (its back-off is forgotten, as
kubelet forgets it when it restarts).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdi.embedded.pods.processes import KILLED_EXIT_CODE, Process
from cdi.embedded.pods.restarts import Backoff, Decision, go_duration
from cdi.embedded.pods.spec import ContainerSpec, PodInfo
from cdi.embedded.pods.status import (
    CONTAINER_CREATING,
    CRASH_LOOP_BACK_OFF,
    ContainerView,
    Running,
    Terminated,
    Waiting,
)

RUNNER_RESTARTED = "the pod runner restarted"


@dataclass(frozen=True)
class Found:
    """A run an earlier runner recorded, as the launcher found it again."""

    container_id: str
    started_at: str
    outcome: Process | Terminated  # still running, or how it ended


@dataclass
class ContainerRecord:
    name: str
    restart_count: int = 0
    process: Process | None = None
    watcher: asyncio.Task[None] | None = None
    container_id: str = ""
    started_at: str = ""
    exited: Terminated | None = None  # the run that ended, until the container starts again
    finished: float = 0.0  # monotonic time `exited` ended, for the back-off
    last: Terminated | None = None
    backoff: Backoff | None = None
    problem: Waiting | None = None  # why it could not be started (volumes, config)
    backoff_reported: bool = False

    @property
    def live(self) -> bool:
        return self.process is not None

    def begin(self, process: Process, started_at: str, backoff: Backoff | None) -> None:
        """A new run started: the one that ended becomes lastState and counts as a restart."""
        if self.exited is not None:
            self.last, self.exited = self.exited, None
            self.restart_count += 1
        if backoff is not None:
            self.backoff = backoff
        self.process, self.started_at, self.problem = process, started_at, None
        self.container_id, self.backoff_reported = process.container_id, False

    def failed_start(self, termination: Terminated, finished: float, backoff: Backoff | None) -> None:
        """A new run that could not even start: counted like a run that ended at once."""
        if self.exited is not None:
            self.last = self.exited
            self.restart_count += 1
        if backoff is not None:
            self.backoff = backoff
        self.exited, self.finished, self.problem, self.backoff_reported = termination, finished, None, False

    def end(self, termination: Terminated, finished: float) -> None:
        self.exited, self.finished, self.process = termination, finished, None


@dataclass
class PodRecord:
    uid: str
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)  # containers an earlier runner lost: kill their leftovers first
    stopping: set[asyncio.Task[None]] = field(default_factory=set)

    def live(self) -> list[ContainerRecord]:
        return [c for c in self.containers.values() if c.live]

    def container(self, name: str) -> ContainerRecord:
        return self.containers.setdefault(name, ContainerRecord(name))


def adopt(pod: PodInfo, status: Mapping[str, Any], now: str, monotonic: float,
          found: Mapping[str, Found] | None = None) -> PodRecord:
    entries = {str(e.get("name")): e for e in status.get("containerStatuses") or ()}
    record = PodRecord(pod.uid)
    for container in pod.containers:
        state, lost = _adopt_container(container.name, entries.get(container.name), now, monotonic,
                                       (found or {}).get(container.name))
        record.containers[container.name] = state
        if lost:
            record.lost.add(container.name)
    return record


def _adopt_container(name: str, entry: Mapping[str, Any] | None, now: str, monotonic: float,
                     found: Found | None) -> tuple[ContainerRecord, bool]:
    """The container's record, and whether its leftovers must be killed before it runs again: always,
    unless its run was found still running. A runner that died just after starting the container,
    before it wrote the run's handle or the status, leaves a live program that neither shows; a run
    found ended may have lost only its shim (killed with the runner before it was on its own) while the
    program goes on (an upload server still holding its port, an importer still writing)."""
    record = _from_status(name, entry, now, monotonic, found) if entry else ContainerRecord(name)
    if found is None or isinstance(found.outcome, Terminated):
        return record, True
    if record.process is None:  # a run the stored status never showed (the runner died before writing it)
        record.begin(found.outcome, found.started_at, None)
    return record, False


def _from_status(name: str, entry: Mapping[str, Any], now: str, monotonic: float,
                 found: Found | None) -> ContainerRecord:
    state, previous = entry.get("state") or {}, (entry.get("lastState") or {}).get("terminated")
    record = ContainerRecord(name, restart_count=int(entry.get("restartCount") or 0), finished=monotonic,
                             last=Terminated.from_dict(previous) if previous else None)
    container_id = str(entry.get("containerID") or "")
    if "running" in state:
        started = str(state["running"].get("startedAt") or now)
        if found is not None and found.container_id == container_id:
            if isinstance(found.outcome, Terminated):
                record.exited = found.outcome
            else:
                record.process, record.started_at, record.container_id = found.outcome, started, container_id
            return record
        record.exited = Terminated(KILLED_EXIT_CODE, "Error", RUNNER_RESTARTED, started, now, container_id,
                                   signal.SIGKILL)
        return record
    if "terminated" in state:
        record.exited = Terminated.from_dict(state["terminated"])
    elif previous:  # waiting to restart after `previous`
        record.exited, record.last = record.last, None
    return record


def view(pod: PodInfo, container: ContainerSpec, record: ContainerRecord, decision: Decision | None,
         terminating: bool = False) -> ContainerView:
    """The container as kubelet reports it; `decision` is what the restart policy says about `exited`."""
    state = _state(pod, container, record, decision, terminating)
    last = (record.exited or record.last) if isinstance(state, Waiting) else record.last  # waiting to run again
    return ContainerView(container.name, container.image, state, last, record.restart_count, record.container_id)


def _state(pod: PodInfo, container: ContainerSpec, record: ContainerRecord, decision: Decision | None,
           terminating: bool) -> Running | Waiting | Terminated:
    if record.live:
        return Running(record.started_at)
    if record.problem is not None and not terminating:
        return record.problem
    if record.exited is None:
        return Waiting(CONTAINER_CREATING)
    if terminating or decision is None or decision.action == "stay":
        return record.exited
    delay = go_duration(record.backoff.delay) if record.backoff else "0s"
    return Waiting(CRASH_LOOP_BACK_OFF, f"back-off {delay} restarting failed container={container.name} "
                                        f"pod={pod.name}_{pod.namespace}({pod.uid})")
