"""Picking running containers up again after the pod runner restarts: the record of each run, and what
looking for it finds.

When the kubelet half (`kubelet`) starts a container it records beside the pod
(`PodPaths.run_record`) the containerID the pod's status shows, when the run started and the
launcher's `RunHandle` (for processes: the shim's pid, start time and exit file; for podman: the
container's name). A restarted runner that knows nothing of a pod calls `find_runs`: for each
container with a record the launcher re-attaches to the run — its live `Process`, the `ExitStatus`
of a run that ended while no runner watched, or nothing. `records.adopt` then matches what was found
against the pod's stored status by containerID: a live run is picked up as it is; an ended run the
status still shows running is reported as it ended; a run the status shows running that cannot be
found counts as killed by the restart, as kubelet reports a container its runtime lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdi.embedded.pods.paths import PodPaths
from cdi.embedded.pods.processes import ExitStatus, Launcher, Process, RunHandle
from cdi.embedded.pods.spec import PodInfo


@dataclass(frozen=True)
class RunRecord:
    container_id: str
    started_at: str
    handle: RunHandle

    def to_dict(self) -> dict[str, Any]:
        return {"containerID": self.container_id, "startedAt": self.started_at, "handle": self.handle.to_dict()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunRecord:
        return cls(str(raw["containerID"]), str(raw.get("startedAt") or ""), RunHandle.from_dict(raw["handle"]))


def write_record(path: Path, record: RunRecord) -> None:
    """Atomically: a runner killed while writing leaves the previous record or this one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as file:
        json.dump(record.to_dict(), file)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def read_record(path: Path) -> RunRecord | None:
    try:
        return RunRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # none, or unreadable: the container cannot be re-attached and counts as killed


async def find_runs(launcher: Launcher, pod: PodInfo,
                    paths: PodPaths) -> dict[str, tuple[RunRecord, Process | ExitStatus]]:
    """For each container with a recorded run: the record, and the run's live process or how it
    ended (containers whose run cannot be found are missing: they were lost)."""
    found: dict[str, tuple[RunRecord, Process | ExitStatus]] = {}
    try:
        owner = paths.uid_file.read_text().strip()
    except OSError:
        owner = ""
    if owner != pod.uid:
        return found  # the directory is another pod's of the same name (or nobody's): none of its runs are ours
    for container in pod.containers:
        record = read_record(paths.run_record(container.name))
        if record is None:
            continue
        outcome = await launcher.reattach(record.handle)
        if outcome is not None:
            found[container.name] = (record, outcome)
    return found
