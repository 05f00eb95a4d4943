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
        if not target.block:
            os.ftruncate(self._fd, virtual_size)

    def write_vectors(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        """Write consecutive pieces at `offset` with as few system calls as the kernel allows."""
        try:
            while pieces:
                done = os.pwritev(self._fd, pieces, offset)
                offset += done
                while pieces and done >= len(pieces[0]):
                    done -= len(pieces[0])
                    pieces = pieces[1:]
                if done:
                    pieces = [pieces[0][done:], *pieces[1:]]
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
        os.fsync(self._fd)
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

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.target.discard()
