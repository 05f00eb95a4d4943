"""Low-level file and block-device operations the writers need: device size, punching holes,
preallocation with a zero-writing fallback, and translating ENOSPC/EDQUOT into `NoSpace`.
Used by `importer.writer`, `importer.target` and `importer.blank`."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

from importer.errors import NoSpace

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_BLOCK = bytes(1 << 20)
# The C library this interpreter is already linked with (no `find_library`, which runs `ldconfig -p`).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except FileNotFoundError:
        return False


def device_size(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def no_space_guard(e: OSError, what: str) -> Exception:
    """ENOSPC/EDQUOT become `NoSpace` with upstream's wording; anything else is returned unchanged."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"unable to write to file: {what}: {os.strerror(e.errno)}")
    return e


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a range so it reads back as zeros; False when the target cannot."""
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
        return False
    raise OSError(err, os.strerror(err))


def write_zeros(fd: int, offset: int, length: int) -> None:
    while length > 0:
        n = min(length, len(_ZERO_BLOCK))
        written = os.pwrite(fd, memoryview(_ZERO_BLOCK)[:n], offset)
        offset += written
        length -= written


def zero_range(fd: int, offset: int, length: int) -> None:
    """Make a range of a block device read as zeros, cheaply when the device allows it."""
    if length > 0 and not punch_hole(fd, offset, length):
        write_zeros(fd, offset, length)


def holes(fd: int, size: int) -> list[tuple[int, int]]:
    """The unallocated ranges of a file, as (offset, length)."""
    found: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
        except OSError:
            return [(0, size)] if offset == 0 else found
        if hole >= size:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            data = size
        found.append((hole, min(data, size) - hole))
        offset = data
    return found


def preallocate(fd: int, size: int) -> None:
    """Reserve every byte of a file: fallocate, or write zeros into its holes where it is unsupported."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    for offset, length in holes(fd, size):
        write_zeros(fd, offset, length)


def supports_direct_io(path: Path) -> bool:
    """Whether `path` (a device, or a file to be created) can be opened with O_DIRECT; upstream's probe
    for CACHE_MODE=TRYNONE after an OOM kill."""
    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | (os.O_CREAT if created else 0), 0o600)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    if created:
        path.unlink(missing_ok=True)
    return True
