"""A long-running `cdi` command for a test: started in its own process group with its log in a file,
waited for until healthy, and stopped (SIGTERM, then SIGKILL) however the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CDI = str(Path(sys.executable).with_name("cdi"))


def wait_until(what: str, ready: Callable[[], Any], timeout: float = 60.0, log: Path | None = None) -> Any:
    """`ready()`'s first true answer (errors count as "not yet"); an assertion naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = ready()
            if result:
                return result
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} not ready after {timeout:.0f} s\n{tail}")


@contextmanager
def running(what: str, argv: Sequence[str], log: Path, healthy: Callable[[subprocess.Popen[bytes]], bool], *,
            env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running until the block ends, once `healthy(process)` says so."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(what, lambda: process.poll() is None and healthy(process), log=log)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
