"""The one async runner for external tools (qemu-img today). It applies resource limits before exec
(so a hostile image cannot make `qemu-img info` eat the machine), enforces a wall-clock timeout,
streams stdout to a callback split on CR or LF (qemu-img's `-p` progress uses CR), and returns the
exit code and stderr. Argument builders and output parsers live with each tool's wrapper."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass


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
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class ToolTimeout(Exception):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} did not finish within {timeout:g} s")


_SPLIT = re.compile(rb"[\r\n]")


async def run_tool(argv: Sequence[str], *, timeout: float | None = None, limits: Limits | None = None,
                   on_output: Callable[[str], None] | None = None) -> Completed:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, preexec_fn=limits.apply if limits else None)
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
        if isinstance(e, asyncio.TimeoutError):
            raise ToolTimeout(argv, timeout or 0) from e
        raise
    return Completed(tuple(argv), proc.returncode or 0, b"".join(out_chunks).decode(errors="replace"),
                     err.decode(errors="replace"))
