"""Containers as local processes: start, signal, wait, re-attach, and read what they leave behind.

`ProcessLauncher` is the one place the runner touches processes (it is injected, like the tool runner
elsewhere). Each container runs under a shim of its own (`shim`, our conmon) in its own session, so
the shim leads a process group that signals reach as a whole; stdin is /dev/null and stdout+stderr go
to its log. The shim is not tied to the runner: a container outlives a restart (or an upgrade) of
`cdi serve`/`cdi node`, and the next runner `reattach`es to it by the `RunHandle` the runner recorded
(pid and start time of the shim, its exit file), waits for it on a pidfd and reads the exit status the
shim wrote. A program that cannot be executed raises `StartFailed`, which the
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
import json
import os
import select
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cdi.contracts.termination import MAX_LENGTH
from cdi.embedded.pods.containerrun import ContainerRun

_PR_SET_PDEATHSIG = 1
MAX_LOG_MESSAGE_BYTES = 2048  # kubelet's MaxContainerTerminationMessageLogLength
MAX_LOG_MESSAGE_LINES = 80  # kubelet's MaxContainerTerminationMessageLogLines
START_FAILED_EXIT_CODE = 128
KILLED_EXIT_CODE = 137
RUNTIME_PROCESS, RUNTIME_CONTAINER = "process", "container"
SHIM = Path(__file__).with_name("shim.py")


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
    exit_file: Path | None = None  # where the process launcher's shim writes the exit status


@dataclass(frozen=True)
class RunHandle:
    """What a runner needs to find a running container again after a restart; the runner records it
    beside the pod (`reattach`), the launcher that started the container interprets it."""

    runtime: str  # RUNTIME_PROCESS or RUNTIME_CONTAINER
    pid: int = 0  # the shim's (process runtime)
    start_time: int = 0  # the shim's start, in clock ticks since boot: pid + start time name one process
    exit_file: str = ""
    name: str = ""  # the container's name (container runtime)
    program: str = ""  # the command's program (container runtime: to explain a StartError)
    memory_limit: int | None = None
    owners: tuple[tuple[str, int, int, int], ...] = field(default=())  # device nodes' (path, uid, gid, mode) before

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "pid": self.pid, "startTime": self.start_time, "exitFile": self.exit_file,
                "name": self.name, "program": self.program, "memoryLimit": self.memory_limit,
                "owners": [list(owner) for owner in self.owners]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunHandle:
        limit = raw.get("memoryLimit")
        return cls(str(raw["runtime"]), int(raw.get("pid") or 0), int(raw.get("startTime") or 0),
                   str(raw.get("exitFile") or ""), str(raw.get("name") or ""), str(raw.get("program") or ""),
                   int(limit) if limit is not None else None,
                   tuple((str(o[0]), int(o[1]), int(o[2]), int(o[3])) for o in raw.get("owners") or ()))


@dataclass(frozen=True)
class ExitStatus:
    code: int  # 128+n when killed by signal n
    signal: int = 0  # the signal that killed it; 0 when it exited (or unknown)
    oom_killed: bool | None = None  # None: the launcher cannot tell (the runner then guesses)
    reason: str = ""  # a reason the launcher knows better than the runner (StartError), with its message
    message: str = ""
    finished_at: str = ""  # when it ended, if the launcher knows (a run that ended while no runner watched)


class Process(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def container_id(self) -> str:
        """The containerID the pod's status shows."""
        ...

    @property
    def handle(self) -> RunHandle:
        """How to find this container again after the runner restarts."""
        ...

    async def signal(self, signum: int) -> None:
        """Send `signum` to every process of the container (nothing when it is gone)."""
        ...

    async def wait(self) -> ExitStatus:
        """How the container ended; nothing of it runs any more."""
        ...


class Launcher(Protocol):
    async def start(self, spec: LaunchSpec) -> Process: ...

    async def reattach(self, handle: RunHandle) -> Process | ExitStatus | None:
        """The container of `handle` if it still runs, how it ended if it ended meanwhile, None when
        nothing is known of it (it counts as killed)."""
        ...


class ShimProcess:
    """A container run by our shim (`shim`): started by this runner or re-attached after a restart.

    The shim leads the container's process group; `signal` reaches the group while the shim lives.
    `wait` waits on a pidfd (a re-attached shim is not our child) and reads the exit status the shim
    wrote; a shim that left none was killed with its container (SIGKILL: 137). A shim this runner
    started is its child: `child` keeps asyncio reaping it."""

    def __init__(self, handle: RunHandle, pidfd: int, child: asyncio.subprocess.Process | None = None) -> None:
        self._handle = handle
        self._pidfd = pidfd
        self._child = child
        self._ended: asyncio.Future[ExitStatus] | None = None

    @property
    def pid(self) -> int:
        return self._handle.pid

    @property
    def container_id(self) -> str:
        return f"pycdi://{self._handle.pid}"

    @property
    def handle(self) -> RunHandle:
        return self._handle

    async def signal(self, signum: int) -> None:
        over = self._ended is not None and self._ended.done()
        if not over and not _readable(self._pidfd):  # the shim still lives, so its group id is still its own
            signal_group(self._handle.pid, signum)

    async def wait(self) -> ExitStatus:
        if self._ended is None:
            self._ended = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._ended)

    async def _wait(self) -> ExitStatus:
        try:
            await _until_readable(self._pidfd)
        finally:
            os.close(self._pidfd)
        return read_exit_file(Path(self._handle.exit_file)) or ExitStatus(KILLED_EXIT_CODE, signal.SIGKILL)


class ProcessLauncher:
    """Starts containers as local processes, each under a shim of its own (`shim`), so they outlive the
    runner; `reattach` finds them again after a restart."""

    async def start(self, spec: LaunchSpec) -> Process:
        if spec.not_found:
            raise StartFailed(spec.not_found)
        if spec.exit_file is None:
            raise StartFailed("the process launcher was given no exit file for the container's shim")
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        spec.exit_file.parent.mkdir(parents=True, exist_ok=True)
        spec.exit_file.unlink(missing_ok=True)
        read_end, write_end = os.pipe()
        try:
            with open(spec.log, "ab") as log:
                shim = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", str(SHIM), str(spec.exit_file), str(write_end), "--", *spec.argv,
                    env=dict(spec.env), cwd=spec.cwd, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, pass_fds=(write_end,), start_new_session=True)
        except OSError as e:
            os.close(read_end)
            raise StartFailed(f'exec: "{sys.executable}" (the container shim): {e.strerror or e}') from e
        finally:
            os.close(write_end)
        pidfd = _pidfd(shim.pid)  # at once: the shim waits for its program, so it is still there
        report = await asyncio.to_thread(_read_report, read_end)
        return _started(report, spec.exit_file, shim, pidfd)

    async def reattach(self, handle: RunHandle) -> Process | ExitStatus | None:
        if handle.runtime != RUNTIME_PROCESS or handle.pid <= 0:
            return None
        pidfd = _pidfd(handle.pid)
        if pidfd is not None and start_time(handle.pid) == handle.start_time:
            return ShimProcess(handle, pidfd)
        if pidfd is not None:
            os.close(pidfd)  # the pid is someone else's now
        return read_exit_file(Path(handle.exit_file)) if handle.exit_file else None


def _started(report: str, exit_file: Path, shim: asyncio.subprocess.Process, pidfd: int | None) -> ShimProcess:
    word, _, rest = report.strip().partition(" ")
    if word != "ok" or rest != str(shim.pid) or pidfd is None:
        if pidfd is not None:
            os.close(pidfd)
        if word == "error":
            raise StartFailed(rest)
        raise StartFailed("the container's shim ended before it started the program (killed?)")
    handle = RunHandle(RUNTIME_PROCESS, pid=shim.pid, start_time=start_time(shim.pid), exit_file=str(exit_file))
    return ShimProcess(handle, pidfd, shim)


def _read_report(fd: int) -> str:
    """The shim's one-line report (blocking; closes `fd`)."""
    data = b""
    try:
        while not data.endswith(b"\n") and (chunk := os.read(fd, 4096)):
            data += chunk
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


async def _until_readable(fd: int) -> None:
    """Until the process of pidfd `fd` has ended."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ended
    finally:
        loop.remove_reader(fd)


def start_time(pid: int, proc: Path = Path("/proc")) -> int:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); 0 when it is gone.
    With the pid it names one process for good: a reused pid has a later start time."""
    try:
        stat_line = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0
    fields = stat_line[stat_line.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else 0


def read_exit_file(path: Path) -> ExitStatus | None:
    """The exit status the shim wrote when its program ended; None when there is none (yet)."""
    try:
        raw = json.loads(path.read_text())
        return ExitStatus(int(raw["exitCode"]), int(raw.get("signal") or 0),
                          finished_at=str(raw.get("finishedAt") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
