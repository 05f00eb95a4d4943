"""Containers as child processes: start, signal, wait, and read what they leave behind.

`ProcessLauncher` is the one place the runner touches processes (it is injected, like the tool runner
elsewhere). Each container runs in its own session, so it leads a process group that signals reach
as a whole, with `PR_SET_PDEATHSIG(SIGKILL)` so it dies when the runner dies (the kernel ties the signal to the
thread that forked it: the event loop's, which lives as long as the runner); stdin is /dev/null and
stdout+stderr go to its log. A program that cannot be executed raises `StartFailed`, which the
runner reports as kubelet does: terminated, exit code 128, reason StartError. Exit codes of processes
killed by a signal are reported as 128+signal (137 for SIGKILL), as container runtimes do, and the
signal itself travels with it (`ExitStatus`), for the status's `signal` field. `oom_kills` reads the
kernel's count of OOM kills, so a SIGKILL that coincides with one can be reported as OOMKilled (the
local runner puts no memory cgroup around a pod, so this is the best it can tell).

A `LaunchSpec` carries the process's command line (local paths) and, for a launcher that runs
containers (`containers`), the same container as the pod sees it (`containerrun.ContainerRun`).
`Process.signal` reaches the whole container (here: its process group); `wait` reports its end,
after which nothing of it is left running (what the leader left in its group is SIGKILLed).

`termination_message` reads the container's termination file as kubelet does (at most 4096 bytes;
with `FallbackToLogsOnError` the last 80 lines / 2048 bytes of the log when the file is empty and
the exit code is not 0).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cdi.contracts.termination import MAX_LENGTH
from cdi.embedded.pods.containerrun import ContainerRun

_PR_SET_PDEATHSIG = 1
MAX_LOG_MESSAGE_BYTES = 2048  # kubelet's MaxContainerTerminationMessageLogLength
MAX_LOG_MESSAGE_LINES = 80  # kubelet's MaxContainerTerminationMessageLogLines
START_FAILED_EXIT_CODE = 128


class StartFailed(Exception):
    """The program could not be executed (not found, not executable)."""


@dataclass(frozen=True)
class LaunchSpec:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    container: ContainerRun | None = None  # the container as the pod sees it, for container launchers
    not_found: str = ""  # why argv[0] is no program here (the process launcher's StartError)


@dataclass(frozen=True)
class ExitStatus:
    code: int  # 128+n when killed by signal n
    signal: int = 0  # the signal that killed it; 0 when it exited (or unknown)
    oom_killed: bool | None = None  # None: the launcher cannot tell (the runner then guesses)
    reason: str = ""  # a reason the launcher knows better than the runner (StartError), with its message
    message: str = ""


class Process(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def container_id(self) -> str:
        """The containerID the pod's status shows."""
        ...

    async def signal(self, signum: int) -> None:
        """Send `signum` to every process of the container (nothing when it is gone)."""
        ...

    async def wait(self) -> ExitStatus:
        """How the container ended; nothing of it runs any more."""
        ...


class Launcher(Protocol):
    async def start(self, spec: LaunchSpec) -> Process: ...


class ChildProcess:
    """A started container process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def container_id(self) -> str:
        return f"pycdi://{self._process.pid}"

    async def signal(self, signum: int) -> None:
        signal_group(self._process.pid, signum)

    async def wait(self) -> ExitStatus:
        ended = exit_status(await self._process.wait())
        signal_group(self._process.pid, signal.SIGKILL)  # what it left in its group goes with it, as with a container
        return ended


class ProcessLauncher:
    """Starts containers as real child processes of this one."""

    async def start(self, spec: LaunchSpec) -> Process:
        if spec.not_found:
            raise StartFailed(spec.not_found)
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            try:
                process = await asyncio.create_subprocess_exec(
                    *spec.argv, env=dict(spec.env), cwd=spec.cwd, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()))
            except OSError as e:
                raise StartFailed(f'exec: "{spec.argv[0]}": {e.strerror or e}') from e
        return ChildProcess(process)


@functools.cache
def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent: int) -> Callable[[], None]:
    prctl = _prctl()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before the signal was armed
            os._exit(START_FAILED_EXIT_CODE)

    return in_child


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def exit_status(returncode: int) -> ExitStatus:
    """asyncio's returncode (-n when killed by signal n) as a container runtime reports it."""
    return ExitStatus(exit_code(returncode), -returncode if returncode < 0 else 0)


def oom_kills(vmstat: Path = Path("/proc/vmstat")) -> int | None:
    """How many processes the kernel's OOM killer has killed since boot; None when it does not say."""
    try:
        for line in vmstat.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def signal_group(pid: int, signum: int) -> bool:
    """Send `signum` to the process group `pid` leads; False when no such group is left."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def termination_message(path: Path, log: Path, exit_code: int, fallback_to_logs: bool) -> str:
    try:
        with open(path, "rb") as file:
            message = file.read(MAX_LENGTH).decode("utf-8", "replace")
    except OSError:
        message = ""
    if not message and fallback_to_logs and exit_code != 0:
        return log_tail(log)
    return message


def log_tail(log: Path, lines: int = MAX_LOG_MESSAGE_LINES, max_bytes: int = MAX_LOG_MESSAGE_BYTES) -> str:
    """The last `lines` lines of the log, at most `max_bytes` of them (the end wins)."""
    try:
        with open(log, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            tail = file.read()
    except OSError:
        return ""
    return b"".join(tail.splitlines(keepends=True)[-lines:]).decode("utf-8", "replace")


def rotate_log(current: Path, previous: Path) -> None:
    """Keep the last run's log as the previous one before a new run starts writing."""
    if current.exists():
        current.replace(previous)
