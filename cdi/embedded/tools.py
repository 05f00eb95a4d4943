"""The control plane's one async runner for external tools (losetup, mkfs.*, mount, umount).

The embedded runtime's local volume pools (`cdi.embedded.volumes`) build argv lists with pure
functions and hand them to a `ToolRunner`; `run_tool` is the real one. It has the shape of the data
plane's `importer.toolrun.run_tool`, which the control plane may not import: run argv without a
shell, enforce a wall-clock timeout, return the exit code with stdout and stderr. Failures are
reported as the `ToolError` hierarchy below; callers translate them into their own errors.

    ToolError
    ├── ToolMissing   the program is not installed (or not on PATH)
    ├── ToolTimeout   it did not finish within the timeout and was killed
    └── ToolFailed    it exited non-zero (raised by `Completed.check`)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

DEFAULT_TIMEOUT = 120.0


class ToolError(Exception):
    """An external tool could not do what was asked."""

    def __init__(self, argv: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.argv = tuple(argv)


class ToolMissing(ToolError):
    def __init__(self, argv: Sequence[str]) -> None:
        super().__init__(argv, f"{argv[0]} is not installed or not on PATH")


class ToolTimeout(ToolError):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(argv, f"{argv[0]} did not finish within {timeout:g} s")


class ToolFailed(ToolError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip() or "no error output"
        super().__init__(argv, f"{' '.join(argv)} exited with status {returncode}: {detail}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Completed:
    """A finished run: what was run, its exit status and its output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Completed:
        """Return self when the tool succeeded; raise `ToolFailed` otherwise."""
        if self.returncode != 0:
            raise ToolFailed(self.argv, self.returncode, self.stderr)
        return self


ToolRunner = Callable[[Sequence[str]], Awaitable[Completed]]


async def run_tool(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> Completed:
    """Run argv to completion (stdin closed) and return its status and output; never raises on a
    non-zero exit (call `check`), raises `ToolMissing` or `ToolTimeout`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError as e:
        raise ToolMissing(argv) from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as e:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(e, TimeoutError):
            raise ToolTimeout(argv, timeout) from e
        raise
    return Completed(tuple(argv), proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
