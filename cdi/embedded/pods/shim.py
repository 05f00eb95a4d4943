"""The container shim: what keeps a worker pod's process running, and its exit status known, while the
pod runner (`cdi serve`, `cdi node`) restarts — our conmon.

The process launcher (`processes.ProcessLauncher`) runs this file by path with the runner's Python in
isolated mode (`python -I -S shim.py EXIT_FILE READY_FD -- PROGRAM ARGS...`), so it imports nothing but
the standard library, whatever the runner's environment. It

1. leads a session and process group of its own (the launcher starts it in a new session), which the
   runner signals as the container. It stays the runner's child, so the runner's event loop reaps it;
   it is not tied to the runner's life (no parent-death signal), so when the runner goes the kernel
   hands it to init (or a subreaper) and it carries on;
2. ignores SIGTERM, SIGINT and SIGHUP by handlers of its own (they reach the whole group: the program
   gets them, the shim waits for it to end), so only SIGKILL ends the shim early;
3. starts the program with the environment and working directory it was given (signals the
   interpreter ignores at start, SIGPIPE and SIGXFSZ, are set back to their defaults first, as
   `subprocess` does) and writes `ok PID` to READY_FD — or `error MESSAGE` when the program could not
   be executed, which the launcher reports as kubelet's StartError;
4. waits for the program, writes its exit status to EXIT_FILE atomically (a temporary file, fsync,
   rename), as JSON: `{"exitCode": 0-255 or 128+n, "signal": n or 0, "finishedAt": RFC 3339}`, and
   SIGKILLs its process group, itself included: what the program left running goes with it, as when
   a container's init process ends. Until then the group exists, so the runner's signals never reach
   a stranger that reused the pid.

A runner that comes back finds the shim by its pid and start time (`processes.reattach`), waits on a
pidfd for it to end, and reads EXIT_FILE; a shim killed by SIGKILL leaves no file, and its container
counts as killed (137). The shim costs one small Python process per running container.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def _ignore(signum: int, frame: object) -> None:
    """A handler, not SIG_IGN: handlers fall back to the default at exec, ignored signals stay ignored."""


def _finished_at() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_exit(path: str, returncode: int) -> None:
    status = {"exitCode": 128 - returncode if returncode < 0 else returncode,
              "signal": -returncode if returncode < 0 else 0, "finishedAt": _finished_at()}
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, json.dumps(status).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _run_program(argv: list[str], failed: int) -> None:
    """In the forked child: default signal dispositions, then exec; on failure say why on `failed`."""
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execv(argv[0], argv)
    except OSError as e:
        os.write(failed, f'exec: "{argv[0]}": {e.strerror or e}'.encode())
    os._exit(127)


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: shim.py EXIT_FILE READY_FD -- PROGRAM [ARGS...]\n")
        return 2
    exit_file, ready, argv = args[0], int(args[1]), args[3:]
    os.set_inheritable(ready, False)
    if os.getsid(0) != os.getpid():
        os.setsid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _ignore)
    read_end, write_end = os.pipe()  # non-inheritable: closed by a successful exec
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.close(ready)
        _run_program(argv, write_end)
    os.close(write_end)
    failure = b""
    while chunk := os.read(read_end, 4096):
        failure += chunk
    os.close(read_end)
    if failure:
        os.waitpid(child, 0)
        os.write(ready, b"error " + failure.replace(b"\n", b" ") + b"\n")
        os.close(ready)
        return 0
    os.write(ready, f"ok {os.getpid()}\n".encode())
    os.close(ready)
    _, status = os.waitpid(child, 0)
    _write_exit(exit_file, os.waitstatus_to_exitcode(status))
    os.killpg(0, signal.SIGKILL)  # what the program left in its group goes with it (the shim too), as in a container
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
