"""Finding processes a previous pod runner left behind, by the marker variables it gave them.

Containers outlive the runner on purpose (their shim re-attaches, `processes`), but one the next runner
cannot re-attach to (its shim was killed, its record lost) may still have programs running (an
importer's qemu-img) that keep writing to the volume. Every process the runner starts carries
`PYCDI_POD_RUNNER_STATE`, `PYCDI_POD_UID` and `PYCDI_CONTAINER` in its environment, which its children
inherit; before a restarted runner runs such a container again, or lets a deleted pod go, it kills
whatever still carries its markers (`/proc/<pid>/environ`, readable for our own processes). Called by
the runner.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

from cdi.embedded.pods.node import MARKER_CONTAINER, MARKER_POD_UID, MARKER_STATE_DIR

PROC = Path("/proc")


def markers(state_dir: Path, pod_uid: str, container: str) -> dict[str, str]:
    """The marker variables of the processes of container `container` of pod `pod_uid` started by the
    runner of `state_dir`."""
    return {MARKER_STATE_DIR: str(state_dir), MARKER_POD_UID: pod_uid, MARKER_CONTAINER: container}


def marked_processes(state_dir: Path, pod_uids: set[str] | None = None, proc: Path = PROC, *,
                     containers: set[str] | None = None) -> dict[int, str]:
    """pid → pod uid of every live process started by the runner of `state_dir` (for `pod_uids` only,
    and of those pods' `containers` only, when given)."""
    found = {}
    for pid, environ in _environments(proc):
        if environ.get(MARKER_STATE_DIR) != str(state_dir):
            continue
        uid = environ.get(MARKER_POD_UID, "")
        if pod_uids is not None and uid not in pod_uids:
            continue
        if containers is None or environ.get(MARKER_CONTAINER, "") in containers:
            found[pid] = uid
    return found


def kill_all(pids: set[int] | dict[int, str]) -> int:
    """SIGKILL each pid; how many were still there."""
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue
    return killed


def parse_environ(raw: bytes) -> dict[str, str]:
    """The NUL-separated `NAME=value` entries of /proc/<pid>/environ."""
    entries = (entry.decode("utf-8", "surrogateescape") for entry in raw.split(b"\0") if b"=" in entry)
    return dict(entry.split("=", 1) for entry in entries)


def _environments(proc: Path) -> Iterator[tuple[int, Mapping[str, str]]]:
    own = os.getpid()
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            raw = (proc / entry.name / "environ").read_bytes()
        except OSError:
            continue  # gone, a kernel thread, or not ours
        if raw:
            yield int(entry.name), parse_environ(raw)
