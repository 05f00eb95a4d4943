"""Secret and ConfigMap volumes written the way kubelet's atomic writer does, so that they can change
under a running container.

A volume's directory never moves (a podman bind mount and a process's path both keep seeing it). Inside
it, each version of the files lives in a hidden directory `..<version>`; `..data` is a symlink to the
current one, and every top-level name the volume shows is a symlink through it (`tls.crt ->
..data/tls.crt`). `project` writes a new version beside the old one, swaps `..data` with a rename (one
atomic step: a reader sees the old files or the new ones, never a mix), fixes the top-level links and
removes the old version. Nothing is written when the files are already what they should be, so the
runner can call it on every look at a running pod (`volumes.refresh_projections`): a rotated
certificate reaches a running upload server as kubelet's periodic sync would bring it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path, PurePosixPath

DATA = "..data"

Files = list[tuple[str, bytes, int]]  # (relative path, content, mode)


def current(directory: Path) -> Files | None:
    """The files the volume shows now, in `Files`' order-independent form; None when it has no version."""
    data = directory / DATA
    if not data.is_symlink():
        return None
    version = directory / data.readlink()
    found: Files = []
    for path in sorted(version.rglob("*")):
        if path.is_file():
            found.append((path.relative_to(version).as_posix(), path.read_bytes(), path.stat().st_mode & 0o7777))
    return found


def project(directory: Path, files: Files) -> bool:
    """Make `directory` show exactly `files`; False when it already did (nothing written)."""
    if _same(current(directory), files):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    _clear_plain_entries(directory)
    old = str((directory / DATA).readlink()) if (directory / DATA).is_symlink() else None
    version = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    staging = directory / version
    staging.mkdir()
    for relative, content, mode in files:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, mode)
    link = directory / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version)
    link.replace(directory / DATA)  # the one atomic step
    _link_top_level(directory, {PurePosixPath(relative).parts[0] for relative, _, _ in files})
    if old is not None and old != version:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


def _same(existing: Files | None, wanted: Files) -> bool:
    return existing is not None and sorted(existing) == sorted(wanted)


def _link_top_level(directory: Path, names: set[str]) -> None:
    for entry in directory.iterdir():
        if entry.name.startswith("..") or entry.name in names:
            continue
        if entry.is_symlink():
            entry.unlink()  # a name the new version no longer has
    for name in names:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")


def _clear_plain_entries(directory: Path) -> None:
    """A directory written by an earlier version of the runner holds plain files: they go."""
    for entry in directory.iterdir():
        if entry.name.startswith("..") or entry.is_symlink():
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
