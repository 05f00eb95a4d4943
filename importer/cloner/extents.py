"""The clone source's data, as the extents the cloner sends: where the data is (SEEK_DATA/SEEK_HOLE on
a file; a block device reports everything as data), which of it is zeros (absolute-aligned
`ZERO_BLOCK`s compared with memcmp speed), cut at every multiple of `EXTENT_ALIGN`. `Windows.spans`
maps each window (the next one ahead, on a reader thread) and yields views of it (what the sender
streams, hashing as it sends: no allocation or copy per extent); `extents` copies them out with their
sha256 (tests, the benchmark's layout check).

The decomposition is a pure function of the source's content and layout: enumerating from any extent
boundary yields exactly the extents that enumerating from zero yields past it, which is what lets
the cloner resume from the server's acknowledged offset (`cdi.contracts.clone_protocol`). Memory is
two windows (at most `EXTENT_ALIGN` bytes each, mapped or read). With detection off (upstream's
behaviour, for comparison) every byte is an extent. Used by `importer.cloner.sender`.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


def read_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill `view` from `offset`; a source that ends first is EIO."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if not n:
            raise OSError(errno.EIO, f"the clone source ended at {offset + done}, before {offset + len(view)}")
        done += n


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


def _zero(window: bytes | bytearray | mmap.mmap, start: int, end: int) -> bool:
    zeros = _ZEROS if end - start == ZERO_BLOCK else _ZEROS[:end - start]
    if isinstance(window, mmap.mmap):  # no startswith; a find of a block-long needle compares once
        return window.find(zeros, start, end) == start
    return window.startswith(zeros, start, end)


def nonzero_runs(window: bytes | bytearray | mmap.mmap, base: int,
                 length: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) within the first `length` bytes of `window` (all of it by default) of the runs not
    made of whole zero blocks, blocks aligned to absolute offsets (`base` is the window's offset in the
    image)."""
    length = len(window) if length is None else length
    run_start = -1
    i = 0
    while i < length:
        j = min(length, (base + i) // ZERO_BLOCK * ZERO_BLOCK + ZERO_BLOCK - base)
        zero = _zero(window, i, j)
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


class Windows:
    """One source's windows, each mapped (read-only, MAP_POPULATE) on a reader thread while the extents
    of the one before are sent: hashing and encryption read the page cache where it is, with no copy
    into a buffer of ours (that copy cost the cloner as much CPU as hashing with BLAKE3). Where a window
    cannot be mapped (a source that refuses mmap, an offset off the page size, a source now shorter
    than the window, which pread reports as EIO where a mapping would fault) it is read into one of
    two buffers reused for the whole clone."""

    def __init__(self, fd: int, size: int, *, detect: bool = True) -> None:
        self._fd = fd
        self._size = size
        self._detect = detect
        self._buffers = (bytearray(EXTENT_ALIGN), bytearray(EXTENT_ALIGN))
        self._mappable = True

    def spans(self, start: int = 0) -> Iterator[tuple[int, memoryview]]:
        """(offset, data) of the extents to send, in order, from `start` (an extent boundary, or 0).
        Each view is valid until the next one is asked for."""
        cuts = (cut for first, last in data_ranges(self._fd, self._size, start, seek=self._detect)
                for cut in windows(first, last))
        with ThreadPoolExecutor(1, thread_name_prefix="clone-read") as reader:
            turn = 0
            pending = self._load(reader, next(cuts, None), turn)
            while pending is not None:
                (begin, stop), loading = pending
                window = loading.result()
                turn ^= 1
                pending = self._load(reader, next(cuts, None), turn)  # the other buffer's views are done with
                view = memoryview(window)[:stop - begin]
                if not self._detect:
                    yield begin, view
                    continue
                for run_start, run_end in nonzero_runs(window, begin, stop - begin):
                    yield begin + run_start, view[run_start:run_end]

    def _load(self, reader: ThreadPoolExecutor, cut: tuple[int, int] | None,
              turn: int) -> tuple[tuple[int, int], Future[mmap.mmap | bytearray]] | None:
        if cut is None:
            return None
        return cut, reader.submit(self._window, *cut, turn)

    def _window(self, begin: int, stop: int, turn: int) -> mmap.mmap | bytearray:
        if self._mappable and begin % mmap.ALLOCATIONGRANULARITY == 0 and stop <= os.lseek(self._fd, 0, os.SEEK_END):
            try:
                return mmap.mmap(self._fd, stop - begin, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                                 prot=mmap.PROT_READ, offset=begin)
            except OSError:
                self._mappable = False
        buffer = self._buffers[turn]
        read_into(self._fd, memoryview(buffer)[:stop - begin], begin)
        return buffer


def extents(fd: int, size: int, start: int = 0, *, detect: bool = True) -> Iterator[Extent]:
    """The extents to send, in order, from `start` (an extent boundary, or 0), copied out with their sha256."""
    for offset, view in Windows(fd, size, detect=detect).spans(start):
        yield Extent(offset, bytes(view), hashlib.sha256(view).digest())


def data_total(fd: int, size: int, *, detect: bool) -> int:
    """Bytes in allocated ranges (an upper bound of what is sent), for progress."""
    return sum(end - start for start, end in data_ranges(fd, size, 0, seek=detect))
