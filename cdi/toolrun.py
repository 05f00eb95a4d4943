"""The one async runner for external tools, shared by the data plane (qemu-img) and the embedded
runtime (losetup, mkfs, mount). It runs argv without a shell, stdin closed, applies resource limits
before exec (so a hostile image cannot make `qemu-img info` eat the machine), enforces a wall-clock
timeout, streams stdout to a callback split on CR or LF (qemu-img's `-p` progress uses CR), and returns
the exit code with stdout and stderr. Argument builders and output parsers live with each tool's
wrapper, as pure functions. It sits at the bottom of the layering: it imports nothing of the project.

    ToolError
    ├── ToolMissing   the program is not installed (or not on PATH)
    ├── ToolTimeout   it did not finish within the timeout and was killed
    └── ToolFailed    it exited non-zero (raised by `Completed.check`)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
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
class Limits:
    address_space: int | None = None
    cpu_seconds: int | None = None

    def apply(self) -> None:
        if self.address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))
        if self.cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))


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
_SPLIT = re.compile(rb"[\r\n]")


async def run_tool(argv: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT, limits: Limits | None = None,
                   on_output: Callable[[str], None] | None = None) -> Completed:
    """Run argv to completion and return its status and output; never raises on a non-zero exit (call
    `check`); raises `ToolMissing` or `ToolTimeout`. `timeout=None` waits as long as it takes."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, preexec_fn=limits.apply if limits else None)
    except FileNotFoundError as e:
        raise ToolMissing(argv) from e
    assert proc.stdout is not None and proc.stderr is not None
    out_chunks: list[bytes] = []

    async def pump_stdout() -> None:
        assert proc.stdout is not None
        pending = b""
        while data := await proc.stdout.read(65536):
            out_chunks.append(data)
            if on_output is None:
                continue
            *tokens, pending = _SPLIT.split(pending + data)
            for token in tokens:
                if token:
                    on_output(token.decode(errors="replace"))

    try:
        _, err = await asyncio.wait_for(asyncio.gather(pump_stdout(), proc.stderr.read()), timeout)
        await proc.wait()
    except (TimeoutError, asyncio.CancelledError) as e:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(e, TimeoutError):
            raise ToolTimeout(argv, timeout or 0) from e
        raise
    return Completed(tuple(argv), proc.returncode or 0, b"".join(out_chunks).decode(errors="replace"),
                     err.decode(errors="replace"))
