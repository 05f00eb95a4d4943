"""Where a pool keeps its snapshots: `snapshots/<handle><suffix>` beside a `<handle>.json` record.

`LoopPool` (suffix `.img`, a copy of the volume's image) and `DirectoryPool` (no suffix, a copy of the
volume's directory) share this. A snapshot exists once its copy is in place under its final name; the
copy is made under `.<handle>.partial` and the record written (atomically, via a temporary file)
before the copy is renamed into place, so a crash at any point leaves either a complete snapshot or
debris that the next `take` of the same handle replaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from cdi.embedded.volumes.errors import SnapshotMissing, translated_os_errors
from cdi.embedded.volumes.pool import SnapshotInfo, snapshot_from_record

_HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")

def check_handle(handle: str) -> str:
    """A handle names files, so it must be a plain name (a pre-provisioned content's handle comes from a user)."""
    if not _HANDLE.match(handle) or ".." in handle:
        raise SnapshotMissing(f"snapshot handle {handle!r} is not one this driver makes: it must be letters, digits, "
                              f"'.', '_' or '-', up to 201 characters")
    return handle

class SnapshotFiles:
    """The snapshots directory of one pool."""

    def __init__(self, directory: Path, suffix: str) -> None:
        self.directory = directory
        self._suffix = suffix

    def backing(self, handle: str) -> Path:
        return self.directory / f"{check_handle(handle)}{self._suffix}"

    def partial(self, handle: str) -> Path:
        return self.directory / f".{check_handle(handle)}.partial"

    def _record(self, handle: str) -> Path:
        return self.directory / f"{check_handle(handle)}.json"

    def read(self, handle: str) -> SnapshotInfo | None:
        """The complete snapshot `handle`, or None."""
        record, backing = self._record(handle), self.backing(handle)
        with translated_os_errors(f"reading snapshot {handle}"):
            if not backing.exists() or not record.exists():
                return None
            return snapshot_from_record(json.loads(record.read_text()))

    def prepare(self, handle: str) -> Path:
        """An empty place for the copy: the partial path, debris of an earlier attempt removed."""
        partial = self.partial(handle)
        with translated_os_errors(f"preparing snapshot {handle}"):
            self.directory.mkdir(parents=True, exist_ok=True)
            _remove(partial)
        return partial

    def commit(self, info: SnapshotInfo) -> SnapshotInfo:
        """Record `info`, then move its copy from the partial path into place."""
        record, temporary = self._record(info.handle), self.directory / f".{info.handle}.json.tmp"
        with translated_os_errors(f"recording snapshot {info.handle}"):
            temporary.write_text(json.dumps(info.record(), sort_keys=True))
            os.replace(temporary, record)
            os.replace(self.partial(info.handle), self.backing(info.handle))
        return info

    def delete(self, handle: str) -> None:
        with translated_os_errors(f"deleting snapshot {handle}"):
            _remove(self.backing(handle))
            self._record(handle).unlink(missing_ok=True)
            _remove(self.partial(handle))

    def handles(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.name.removesuffix(".json") for path in self.directory.glob("*.json")
                      if not path.name.startswith("."))

def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

TakeCopy = Callable[[Path], str]  # copies into the given path, returns "reflink" or "sparse"
