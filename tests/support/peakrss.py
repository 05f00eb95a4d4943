"""Peak memory of a child process, measured the way that means something for a freshly exec'd program.

`getrusage`/`wait4` report `ru_maxrss`, which Linux carries across exec: a child forked from a big
pytest process starts with the parent's resident set, so it would report hundreds of MiB it never used.
`VmHWM` in /proc/<pid>/status belongs to the process's own address space and starts again at exec, so
we poll it while the child runs (it only rises) and keep the last value read.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


def _vmhwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_with_peak_rss(argv: Sequence[str], env: Mapping[str, str], stderr: IO[bytes],
                      timeout: float = 300) -> tuple[int, int]:
    """Run argv to completion; returns (exit code, peak RSS in KiB)."""
    proc = subprocess.Popen(list(argv), env=dict(env), stderr=stderr)
    peak = 0
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"{argv[0]} did not finish within {timeout} s")
        peak = max(peak, _vmhwm_kib(proc.pid) or 0)
        time.sleep(0.02)
    return proc.returncode, peak
