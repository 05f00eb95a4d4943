"""Runs one measured step and records wall time, peak RSS of its process tree and peak scratch use.

CPU is the user + system seconds of the child and every descendant it waited for (`wait4`'s rusage:
an nbdkit or qemu-img under a shell counts), so pipelines of several processes are charged in full; the
system part is kept too (`Sample.sys`), to tell interpreter work from kernel work.
Peak RSS is the highest sum of RSS over the child and all its descendants, sampled from /proc every
20 ms (pipelines such as nbdkit + qemu-img are trees). The child's `ru_maxrss` is not used: it counts
the pages a fork shares with this (large) process before the exec. Scratch use is sampled as the
allocated size of everything under a directory. Used by `bench.cases`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE = 0.02


@dataclass
class Sample:
    wall: float
    rss: int  # bytes
    scratch: int  # bytes
    returncode: int
    cpu: float = 0.0  # user + system seconds of the whole tree
    sys: float = 0.0  # the system (kernel) part of `cpu`: syscalls, page-cache copies, page faults, softirqs


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_rss(root: int) -> int:
    tree = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def allocated(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_blocks * 512
            except OSError:
                continue
    return total


class Watch:
    """Samples a process tree and a scratch directory until stopped."""

    def __init__(self, pid: int | None, scratch: Path | None) -> None:
        self.pids: list[int] = [pid] if pid else []
        self._scratch = scratch
        self.rss = 0
        self.scratch = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            self.rss = max(self.rss, sum(tree_rss(pid) for pid in self.pids))
            self.scratch = max(self.scratch, allocated(self._scratch))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.scratch = max(self.scratch, allocated(self._scratch))


def run(argv: list[str], *, env: dict[str, str] | None = None, scratch: Path | None = None,
        log: Path | None = None, stdout: int | None = None) -> Sample:
    """Run `argv` to completion under the watch."""
    out = log.open("ab") if log else subprocess.DEVNULL
    start = time.monotonic()
    try:
        process = subprocess.Popen(argv, env=env, stdout=stdout if stdout is not None else out, stderr=out)
        watch = Watch(process.pid, scratch)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        watch.stop()
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    return Sample(wall, watch.rss, watch.scratch, process.returncode, usage.ru_utime + usage.ru_stime,
                  usage.ru_stime)


def run_many(argvs: list[list[str]], *, envs: list[dict[str, str]], logs: list[Path]) -> Sample:
    """Start every command at once and wait for all: wall time until the last ends, summed peak RSS of
    the trees (sampled together), summed CPU, and the first non-zero exit code."""
    start = time.monotonic()
    outs = [log.open("ab") for log in logs]
    try:
        processes = [subprocess.Popen(argv, env=env, stdout=out, stderr=out)
                     for argv, env, out in zip(argvs, envs, outs, strict=True)]
        watch = Watch(None, None)
        watch.pids.extend(p.pid for p in processes)
        cpu, system, codes = 0.0, 0.0, []
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            system += usage.ru_stime
            codes.append(process.returncode)
        wall = time.monotonic() - start
        watch.stop()
    finally:
        for out in outs:
            out.close()
    return Sample(wall, watch.rss, 0, next((c for c in codes if c), 0), cpu, system)


class CpuHog:
    """A busy loop pinned to one CPU for the length of a `with` block: the "busy machine" of the issue
    (another tenant's work on the other core)."""

    def __init__(self, cpu: int) -> None:
        self._cpu = cpu
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CpuHog:
        self._process = subprocess.Popen(["taskset", "-c", str(self._cpu), "sh", "-c", "while :; do :; done"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
