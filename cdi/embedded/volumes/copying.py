"""Copying a volume's data: reflink (O(1)) where the filesystem shares extents, a sparse copy elsewhere.

The pools (`cdi.embedded.volumes.loop`, `cdi.embedded.volumes.directory`) call these to snapshot a
volume and to make a volume from a volume or a snapshot; `cdi.embedded.volumes.selection` calls
`supports_reflink` to decide whether the pool directory can keep images as they are or needs an XFS
image with reflink (`cdi.embedded.volumes.reflinkfs`). Everything here is synchronous file I/O; the
pools run it in a thread and translate `OSError` (`translated_os_errors`).

`clone_file` first asks the kernel for a reflink (the FICLONE ioctl: the copy shares every extent of
the source, whatever its size, until either side is written). Where that is refused (ext4, or across
filesystems) it copies only the data: it walks the source's data segments with SEEK_DATA/SEEK_HOLE and
copies each with copy_file_range, so holes stay holes and a 64 GiB image holding 2 GiB costs 2 GiB.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from pathlib import Path
from typing import Final, Literal

FICLONE: Final = 0x40049409  # _IOW(0x94, 9, int); Python's fcntl names it only from 3.12
BLKFLSBUF: Final = 0x1261  # flush a block device's buffer cache
_CHUNK: Final = 1 << 30  # copy_file_range may stop short; ask for at most this much at once
_NO_REFLINK: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                errno.EBADF, errno.EPERM})

CopyMethod = Literal["reflink", "sparse"]


def supports_reflink(directory: Path) -> bool:
    """Whether files in `directory` can be reflinked: try FICLONE on a small probe file."""
    source, target = directory / ".reflink-probe", directory / ".reflink-probe.clone"
    try:
        source.write_bytes(b"reflink probe\n" * 512)
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError as e:
        if e.errno in _NO_REFLINK:
            return False
        raise
    finally:
        source.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def clone_file(source: Path, target: Path) -> CopyMethod:
    """Make `target` (created or truncated) a copy of `source`: a reflink if the filesystem has it,
    else a sparse copy. Flushed to disk before returning. Which method was used."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            method: CopyMethod = "reflink"
        except OSError as e:
            if e.errno not in _NO_REFLINK:
                raise
            _sparse_copy(src.fileno(), dst.fileno())
            method = "sparse"
        os.fsync(dst.fileno())
    shutil.copymode(source, target)
    return method


def sparse_copy(source: Path, target: Path) -> None:
    """Copy only `source`'s data segments into `target` (same size; holes stay holes)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        _sparse_copy(src.fileno(), dst.fileno())
        os.fsync(dst.fileno())


def _sparse_copy(src: int, dst: int) -> None:
    size = os.fstat(src).st_size
    os.ftruncate(dst, size)
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # nothing but a hole up to the end
                break
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        _copy_range(src, dst, start, end)
        offset = end


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    position = start
    while position < end:
        try:
            copied = os.copy_file_range(src, dst, min(_CHUNK, end - position), position, position)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            copied = _read_write(src, dst, position, min(_CHUNK, end - position))
        if copied == 0:  # the source shrank under us
            return
        position += copied


def _read_write(src: int, dst: int, position: int, length: int) -> int:
    data = os.pread(src, min(length, 8 << 20), position)
    if data:
        os.pwrite(dst, data, position)
    return len(data)


def copy_tree(source: Path, target: Path) -> CopyMethod:
    """Copy a directory volume: each regular file by `clone_file`, directories and symlinks as they
    are, modes kept. `target` must not exist. "reflink" only if every file was reflinked."""
    method: CopyMethod = "reflink"
    target.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        info = entry.lstat()
        destination = target / entry.name
        if stat.S_ISDIR(info.st_mode):
            if copy_tree(entry, destination) == "sparse":
                method = "sparse"
        elif stat.S_ISLNK(info.st_mode):
            destination.symlink_to(entry.readlink())
        elif stat.S_ISREG(info.st_mode) and clone_file(entry, destination) == "sparse":
            method = "sparse"
    shutil.copymode(source, target)
    return method


def flush_block_device(device: str) -> None:
    """Write a loop device's buffered writes through to its backing file (fsync), then drop its buffer
    cache (BLKFLSBUF), so a copy of the backing file sees everything written to the device."""
    fd = os.open(device, os.O_RDONLY)
    try:
        os.fsync(fd)
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)
