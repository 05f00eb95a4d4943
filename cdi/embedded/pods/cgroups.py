"""A memory cgroup around each container the container runtime starts, like kubelet's pod cgroup.

`containers.ContainerLauncher` gives every container run a cgroup of its own
(`/pycdi/<container name>`, podman's `--cgroup-parent`) that holds the pod's memory limit. podman's
own container cgroup goes away with the container, and with it what a test or a status wants to
know afterwards; this one stays until the launcher has read it: the peak memory of the run and
whether the limit was hit. podman reports `State.OOMKilled` from conmon, which on cgroup v1 does not
see an OOM kill here; cgroup v1 keeps no OOM count for a child that is gone either, so the limit is
set on this cgroup (the container's own `--memory` is set a little higher, so that it is always this
one that is hit) and read back with `verdict`.

Both hierarchies are read: v1 (`memory/…/memory.limit_in_bytes`, `memory.max_usage_in_bytes`,
`memory.failcnt`, `memory.oom_control`) and v2 (`memory.max`, `memory.peak`, `memory.events`). Where
no memory controller can be written, `MemoryCgroup.open` returns None and the launcher goes without.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "pycdi"


@dataclass(frozen=True)
class MemoryUsage:
    """What a run's cgroup recorded: peak bytes, times the limit was hit, OOM kills the kernel counted,
    and the limit it held (None: unlimited)."""

    peak: int
    limit_hits: int
    oom_kills: int
    limit: int | None = None


def verdict(exit_code: int, runtime_says: bool, usage: MemoryUsage | None, global_kills: int) -> bool:
    """Whether a container was OOMKilled: the runtime says so, its cgroup counted an OOM kill, or it
    died of SIGKILL (137) after hitting its cgroup's limit while the kernel's OOM killer struck."""
    if runtime_says:
        return True
    if usage is None:
        return False
    return usage.oom_kills > 0 or (exit_code == 137 and usage.limit_hits > 0 and global_kills > 0)


class MemoryCgroup:
    """One run's cgroup, `/pycdi/<name>` in every hierarchy podman creates it in."""

    def __init__(self, root: Path, name: str, v2: bool) -> None:
        self._root = root
        self.name = name
        self._v2 = v2

    @property
    def parent(self) -> str:
        """The path podman's --cgroup-parent takes."""
        return f"/{PARENT}/{self.name}"

    @property
    def memory_dir(self) -> Path:
        return (self._root if self._v2 else self._root / "memory") / PARENT / self.name

    @classmethod
    def of(cls, name: str, root: Path = CGROUP_ROOT) -> MemoryCgroup:
        """The cgroup of `name`, whether or not it exists."""
        return cls(root, name, not (root / "memory").is_dir() and (root / "cgroup.controllers").exists())

    @classmethod
    def open(cls, name: str, limit: int | None, root: Path = CGROUP_ROOT) -> MemoryCgroup | None:
        """A fresh cgroup for `name` (a leftover is removed first) with `limit` bytes, or None when
        the machine lets us create none."""
        cgroup = cls.of(name, root)
        v2 = cgroup._v2
        cgroup.remove()
        try:
            if v2:
                _enable_memory(root, root / PARENT)
            cgroup.memory_dir.mkdir(parents=True, exist_ok=True)
            if limit is not None:
                (cgroup.memory_dir / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit))
        except OSError:
            cgroup.remove()
            return None
        return cgroup

    def usage(self) -> MemoryUsage | None:
        try:
            if self._v2:
                events = _fields(self.memory_dir / "memory.events")
                return MemoryUsage(_int(self.memory_dir / "memory.peak"), events.get("max", 0),
                                   events.get("oom_kill", 0), _limit(self.memory_dir / "memory.max"))
            control = _fields(self.memory_dir / "memory.oom_control")
            return MemoryUsage(_int(self.memory_dir / "memory.max_usage_in_bytes"),
                               _int(self.memory_dir / "memory.failcnt"), control.get("oom_kill", 0),
                               _limit(self.memory_dir / "memory.limit_in_bytes"))
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the cgroup (and what podman made under it: conmon's) from every hierarchy."""
        tops = [self._root / PARENT / self.name] if self._v2 else [
            entry / PARENT / self.name for entry in _hierarchies(self._root)]
        for top in tops:
            if not top.is_dir():
                continue
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    Path(directory).rmdir()
                except OSError:
                    pass


def _hierarchies(root: Path) -> list[Path]:
    try:
        return [entry for entry in root.iterdir() if entry.is_dir() and not entry.is_symlink()]
    except OSError:
        return []


def _enable_memory(root: Path, parent: Path) -> None:
    """cgroup v2: children of `parent` may use the memory controller."""
    parent.mkdir(exist_ok=True)
    for directory in (root, parent):
        control = directory / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            control.write_text("+memory")


def _int(path: Path) -> int:
    return int(path.read_text().strip())


def _limit(path: Path) -> int | None:
    """A cgroup's memory limit; None for "max" (v2) or v1's page-rounded 2**63 - 1."""
    text = path.read_text().strip()
    return None if text == "max" or int(text) >= 1 << 62 else int(text)


def _fields(path: Path) -> dict[str, int]:
    """`key value` lines (memory.oom_control, memory.events) as a dict."""
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            fields[key] = int(value)
    return fields
