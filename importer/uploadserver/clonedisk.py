"""The target side of a host-assisted clone, on disk: extents written at their offsets, the holes
between them left (or made) to read as zeros, and the finished disk sized and committed. Synchronous:
the clone endpoints (`importer.uploadserver.clonetarget`) call it on a worker thread.

Filesystem targets get `disk.img` written through the hidden partial file of `importer.target` (a fresh
sparse file, so a hole costs nothing), then grown to the target's usable space exactly as the
importer grows a raw image (`importer.pipeline.Pipeline._resize`: min(usable space after filesystem
overhead, requested size), never shrunk) and preallocated when PREALLOCATION asks. Block targets are
written in place; a fresh device is not guaranteed to read zeros, so every hole is zeroed the cheapest
way the device allows (FALLOC_FL_ZERO_RANGE when preallocating, otherwise punch/discard, BLKZEROOUT,
and only then written zeros). A device smaller than the source is refused before anything is written.

Extents received into page-aligned buffers (`importer.uploadserver.clonestream`) are written with
O_DIRECT where the target allows it (upstream's cache mode "none" for qemu-img): the data goes from the
receive buffer to the device without being copied into the page cache and written back at `commit`,
which on a busy node costs as much CPU as the transfer itself and leaves the whole clone to flush at
the end. Pieces that are not aligned to `DIRECT_ALIGN` (an unaligned extent's first or last bytes)
and targets that refuse O_DIRECT (tmpfs) are written through the page cache; `commit` fsyncs both.
A Filesystem target is not sized before the data arrives: each extent lands at or past the file's end,
so a direct write extends the file instead of filling a hole inside it, which ext4 does through an
unwritten extent converted after every write (measured at half the throughput through a loop device).
`commit` sizes it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from cdi.sizing import usable_space
from importer.blockio import no_space_guard, preallocate, punch_hole, write_zeros
from importer.errors import ImageTooLarge, too_large
from importer.target import Target
from importer.uploadserver.config import UploadServerConfig

log = logging.getLogger(__name__)
_FALLOC_FL_ZERO_RANGE = 0x10
_BLKZEROOUT = 0x127F  # _IO(0x12, 127)
_SECTOR = 512
DIRECT_ALIGN = 4096  # offsets, lengths and buffer addresses of O_DIRECT writes (covers 512 and 4K devices)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


@dataclass(frozen=True)
class Sizing:
    """What the finished disk should look like (from the upload server's configuration)."""

    image_size: int | None
    overhead: Decimal
    preallocate: bool


def sizing_of(config: UploadServerConfig) -> Sizing:
    return Sizing(config.image_size, config.filesystem_overhead, config.preallocation)


def _zero_range_fallocate(fd: int, offset: int, length: int) -> bool:
    if _libc.fallocate(fd, _FALLOC_FL_ZERO_RANGE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
        return False
    raise OSError(err, os.strerror(err))


def _blkzeroout(fd: int, offset: int, length: int) -> bool:
    try:
        fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", offset, length))
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
            return False
        raise
    return True


def zero_device_range(fd: int, offset: int, length: int, *, keep_allocated: bool) -> None:
    """Make [offset, offset+length) of a block device read as zeros: unaligned edges are written, the
    sector-aligned middle is zeroed by the device (allocated when `keep_allocated`)."""
    if length <= 0:
        return
    start, end = -(-offset // _SECTOR) * _SECTOR, (offset + length) // _SECTOR * _SECTOR
    if start >= end:
        write_zeros(fd, offset, length)
        return
    write_zeros(fd, offset, start - offset)
    write_zeros(fd, end, offset + length - end)
    middle = end - start
    if keep_allocated and _zero_range_fallocate(fd, start, middle):
        return
    if not keep_allocated and punch_hole(fd, start, middle):
        return
    if not _blkzeroout(fd, start, middle):
        write_zeros(fd, start, middle)


def _after(pieces: Sequence[bytes | memoryview], done: int) -> list[bytes | memoryview]:
    """What is left of consecutive pieces once `done` bytes of them are written."""
    rest = list(pieces)
    while rest and done >= len(rest[0]):
        done -= len(rest[0])
        rest.pop(0)
    if rest and done:
        rest[0] = memoryview(rest[0])[done:]
    return rest


def _open_direct(target: Target) -> int:
    """A second descriptor on what `open_for_write` opened, with O_DIRECT; -1 where it is refused."""
    try:
        return os.open(target.write_path, os.O_WRONLY | os.O_DIRECT)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        log.info("the clone target %s refuses O_DIRECT: writing through the page cache", target.write_path)
        return -1


class ClonedDisk:
    """One clone's disk, open for writing from `begin` to `commit` or `discard`."""

    def __init__(self, target: Target, virtual_size: int, sizing: Sizing) -> None:
        if target.block and virtual_size > target.available:
            raise ImageTooLarge(f"the target block volume ({target.available} bytes) is smaller than the clone "
                                f"source ({virtual_size} bytes). A larger PVC is required")
        if not target.block and virtual_size > target.available:
            raise too_large(virtual_size, target.available)
        self.target = target
        self.virtual_size = virtual_size
        self._sizing = sizing
        target.clean()
        self._fd = target.open_for_write()
        self._written_until = 0  # nothing past this was ever written: holes there need no work
        try:
            self._direct = _open_direct(target)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def direct(self) -> bool:
        """Whether aligned pieces still go around the page cache."""
        return self._direct >= 0

    def write_aligned(self, offset: int, pieces: Sequence[memoryview]) -> None:
        """`write_vectors` for pieces that start page-aligned in memory (mmap buffers): with O_DIRECT
        when the offset and every length are multiples of DIRECT_ALIGN, else through the page cache."""
        if self._direct < 0 or offset % DIRECT_ALIGN or any(len(piece) % DIRECT_ALIGN for piece in pieces):
            self.write_vectors(offset, pieces)
            return
        try:
            done = os.pwritev(self._direct, pieces, offset)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise no_space_guard(e, str(self.target.disk_path)) from e
            log.info("the clone target refused an O_DIRECT write (%s); writing through the page cache", e)
            os.close(self._direct)
            self._direct, done = -1, 0
        self._written_until = max(self._written_until, offset + done)
        rest = _after(pieces, done)
        if rest:  # a short (or refused) direct write: the rest through the page cache
            self.write_vectors(offset + done, rest)

    def write_vectors(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        """Write consecutive pieces at `offset` with as few system calls as the kernel allows."""
        try:
            while pieces:
                done = os.pwritev(self._fd, pieces, offset)
                offset += done
                pieces = _after(pieces, done)
        except OSError as e:
            raise no_space_guard(e, str(self.target.disk_path)) from e
        self._written_until = max(self._written_until, offset)

    def hole(self, offset: int, length: int) -> None:
        """The range is a hole of the image: make sure it reads as zeros."""
        if self.target.block:
            zero_device_range(self._fd, offset, length, keep_allocated=self._sizing.preallocate)
            return
        end = min(offset + length, self._written_until)  # a fresh sparse file is all hole past what we wrote
        if end > offset and not punch_hole(self._fd, offset, end - offset):
            write_zeros(self._fd, offset, end - offset)

    def commit(self) -> int:
        """Size, preallocate, make durable and visible; returns the final size of the disk."""
        size = self.virtual_size if self.target.block else self._resize()
        os.fsync(self._fd)  # the inode's: covers what went through either descriptor
        self._close_direct()
        os.close(self._fd)
        self._fd = -1
        self.target.commit()
        return size

    def _resize(self) -> int:
        size, sizing, available = self.virtual_size, self._sizing, self.target.available
        if sizing.image_size is not None:
            wanted = min(usable_space(sizing.overhead, available), sizing.image_size)
            if size < wanted:
                log.info("Resize: %d -> %d bytes", size, wanted)
                size = wanted
        if size > available:
            raise too_large(size, available)
        try:
            os.ftruncate(self._fd, size)
            if sizing.preallocate:
                preallocate(self._fd, size)
        except OSError as e:
            raise no_space_guard(e, str(self.target.disk_path)) from e
        return size

    def _close_direct(self) -> None:
        if self._direct >= 0:
            os.close(self._direct)
            self._direct = -1

    def discard(self) -> None:
        self._close_direct()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.target.discard()
