"""The clone source's data, as the extents the cloner sends: where the data is (SEEK_DATA/SEEK_HOLE on
a file; a block device reports everything as data), which of it is zeros (absolute-aligned
`ZERO_BLOCK`s compared with memcmp speed), cut at every multiple of `EXTENT_ALIGN`. Each extent comes
with the sha256 of its bytes, computed on the reading thread.

The decomposition is a pure function of the source's content and layout: enumerating from any extent
boundary yields exactly the extents that enumerating from zero yields past it, which is what lets
the cloner resume from the server's acknowledged offset (`cdi.contracts.clone_protocol`). Memory is
one window (at most `EXTENT_ALIGN` bytes) per extent being produced. With detection off (upstream's
behaviour, for comparison) every byte is an extent. Used by `importer.cloner.sender`.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from cdi.contracts.clone_protocol import EXTENT_ALIGN, ZERO_BLOCK

_ZEROS = bytes(ZERO_BLOCK)


@dataclass(frozen=True)
class Extent:
    offset: int
    data: bytes
    sha256: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def read_exactly(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    done = len(data)
    while done < length:
        more = os.pread(fd, length - done, offset + done)
        if not more:
            raise OSError(errno.EIO, f"the clone source ended at {offset + done}, before {offset + length}")
        parts.append(more)
        done += len(more)
    return b"".join(parts)


def data_ranges(fd: int, size: int, start: int, *, seek: bool) -> Iterator[tuple[int, int]]:
    """(start, end) of the allocated ranges at or after `start`; everything when `seek` is off or the
    source cannot tell (block devices, filesystems without SEEK_DATA)."""
    if not seek:
        if start < size:
            yield start, size
        return
    position = start
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield position, size
                return
            raise
        if data >= size:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        yield data, hole
        position = hole


def nonzero_runs(window: bytes, base: int) -> Iterator[tuple[int, int]]:
    """(start, end) within `window` of the runs not made of whole zero blocks, blocks aligned to
    absolute offsets (`base` is the window's offset in the image)."""
    length = len(window)
    run_start = -1
    i = 0
    while i < length:
        j = min(length, (base + i) // ZERO_BLOCK * ZERO_BLOCK + ZERO_BLOCK - base)
        zero = window.startswith(_ZEROS if j - i == ZERO_BLOCK else _ZEROS[:j - i], i)
        if zero and run_start >= 0:
            yield run_start, i
            run_start = -1
        elif not zero and run_start < 0:
            run_start = i
        i = j
    if run_start >= 0:
        yield run_start, length


def windows(start: int, end: int) -> Iterator[tuple[int, int]]:
    """[start, end) cut at every multiple of EXTENT_ALIGN."""
    position = start
    while position < end:
        stop = min(end, (position // EXTENT_ALIGN + 1) * EXTENT_ALIGN)
        yield position, stop
        position = stop


def extents(fd: int, size: int, start: int = 0, *, detect: bool = True) -> Iterator[Extent]:
    """The extents to send, in order, from `start` (an extent boundary, or 0)."""
    for first, last in data_ranges(fd, size, start, seek=detect):
        for begin, stop in windows(first, last):
            window = read_exactly(fd, begin, stop - begin)
            if not detect:
                yield Extent(begin, window, hashlib.sha256(window).digest())
                continue
            for run_start, run_end in nonzero_runs(window, begin):
                data = window if run_end - run_start == len(window) else window[run_start:run_end]
                yield Extent(begin + run_start, data, hashlib.sha256(data).digest())


def data_total(fd: int, size: int, *, detect: bool) -> int:
    """Bytes in allocated ranges (an upper bound of what is sent), for progress."""
    return sum(end - start for start, end in data_ranges(fd, size, 0, seek=detect))
