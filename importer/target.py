"""The volume an import writes to: a directory that receives `disk.img` (Filesystem volumes) or a
block device (Block volumes), and how much the disk may occupy.

A disk image is first written to a hidden partial file beside `disk.img` and renamed into place only
after every check has passed, so a refused or interrupted import never leaves a `disk.img` that looks
complete. A worker killed mid-write (SIGKILL, OOM, node restart) cannot remove what it wrote, so the
next attempt removes it before it measures the free space (`discover_target`): a half-written disk
must not make a restart fail with "DataVolume too small". Block volumes have a fixed size and
nothing to remove. Used by `importer.pipeline`, `importer.blank` and the upload server.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cdi.contracts.importer_env import DISK_IMAGE_NAME, SCRATCH_IMAGE_NAME
from importer.archive import STAGING_NAME
from importer.blockio import device_size, is_block_device
from importer.checkpoint import CHECKPOINT_NAME
from importer.errors import ConfigurationError
from importer.qcow2stream.spool import SPOOL_NAME

PARTIAL_NAME = ".disk.img.partial"
DISK_MODE = 0o660


@dataclass(frozen=True)
class Target:
    data_path: Path
    block: bool
    available: int

    @property
    def disk_path(self) -> Path:
        return self.data_path if self.block else self.data_path / DISK_IMAGE_NAME

    @property
    def write_path(self) -> Path:
        """Where the disk is written before it is committed."""
        return self.data_path if self.block else self.data_path / PARTIAL_NAME

    def clean(self) -> None:
        """Remove what an earlier attempt left (upstream's CleanAll), never a block device."""
        if not self.block:
            remove_leftovers(self.data_path)

    @property
    def partial_exists(self) -> bool:
        return not self.block and self.write_path.is_file()

    def open_for_write(self) -> int:
        if self.block:
            return os.open(self.data_path, os.O_WRONLY | os.O_EXCL)
        return os.open(self.write_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DISK_MODE)

    def open_for_resume(self, offset: int) -> int:
        """The partly written disk of an earlier attempt, cut back to `offset` (a file: what was written
        after the checkpoint goes, so the holes the writer skips read as zeros again)."""
        if self.block:
            return os.open(self.data_path, os.O_WRONLY | os.O_EXCL)
        fd = os.open(self.write_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def discard(self) -> None:
        if not self.block:
            self.write_path.unlink(missing_ok=True)

    def commit(self) -> None:
        """Make the written disk visible as `disk.img`, durably."""
        if self.block:
            _fsync_path(self.data_path)
            return
        os.chmod(self.write_path, DISK_MODE)
        _fsync_path(self.write_path)
        os.replace(self.write_path, self.disk_path)
        _fsync_path(self.data_path)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_space(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def remove_leftovers(data_path: Path, *, keep_partial: bool = False) -> None:
    """Remove the disk, the partial disk, its checkpoint and the archive staging directory an earlier
    attempt left (the partial disk or staging directory and the checkpoint stay when `keep_partial`: a
    resumable import)."""
    names = (DISK_IMAGE_NAME,) if keep_partial else (DISK_IMAGE_NAME, PARTIAL_NAME, CHECKPOINT_NAME)
    for name in names:
        (data_path / name).unlink(missing_ok=True)
    if not keep_partial:  # a resumed archive import goes on extracting into it (`importer.archive`)
        shutil.rmtree(data_path / STAGING_NAME, ignore_errors=True)


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def discover_target(data_path: Path, image_size: int | None, *, keep_partial: bool = False) -> Target:
    """Block if `data_path` is a block device; otherwise a directory whose free space (capped by the
    requested size, as upstream's calculateTargetSize) bounds the disk, measured once what an earlier
    attempt left there is gone. With `keep_partial` (the importer found a checkpoint), the partial
    disk stays and its blocks count as free: resumed or started over, it is the same disk."""
    if is_block_device(data_path):
        return Target(data_path, True, device_size(data_path))
    if not data_path.is_dir():
        raise ConfigurationError(f"data path {data_path} is neither a directory nor a block device")
    remove_leftovers(data_path, keep_partial=keep_partial)
    available = free_space(data_path) + (_allocated(data_path / PARTIAL_NAME) if keep_partial else 0)
    if image_size is not None:
        available = min(available, image_size)
    return Target(data_path, False, available)


def scratch_free(scratch_dir: Path) -> int:
    """Free bytes in the scratch directory; 0 when there is no usable scratch space."""
    try:
        return free_space(scratch_dir) if scratch_dir.is_dir() else 0
    except OSError:
        return 0


def prepare_scratch(scratch_dir: Path | None) -> tuple[Path | None, int]:
    """The scratch file and the free space for it, or (None, 0) when the pod has no scratch volume (the
    importer then asks for one). What an earlier, killed attempt left there is removed first, so it is
    not counted against the space."""
    if scratch_dir is None or not scratch_dir.is_dir():
        return None, 0
    for name in (SCRATCH_IMAGE_NAME, SPOOL_NAME):
        (scratch_dir / name).unlink(missing_ok=True)
    space = scratch_free(scratch_dir)
    return (scratch_dir / SCRATCH_IMAGE_NAME, space) if space > 0 else (None, 0)


def clear_directory(path: Path, *, keep: tuple[str, ...] = ("lost+found",)) -> None:
    for entry in path.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
