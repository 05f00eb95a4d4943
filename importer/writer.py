"""Streams bytes from a reader onto a file or block device, skipping zero blocks.

Zero detection is per 64 KiB block: all-zero blocks are not written, so targets stay sparse and time
follows the data, not the virtual size. On a fresh file, skipped ranges are holes (a final ftruncate
sets the length). On a block device, which may hold old data, skipped ranges are zeroed by punching
holes (falling back to writing zeros). With `sparse=False` every byte is written (preallocated block
targets). A byte `limit` stops oversized and decompression-bomb streams before they overrun the target.
`WriteQueue` does the writing on a background thread (copying into the page cache costs about as much
as decompressing on a small server, so the two overlap) and paces writeback: every few tens of MiB it
asks the kernel to write back what was written and drop those pages, so dirty page cache (which
counts against an importer pod's memory limit: upstream's OOM kills) stays bounded and the final
fsync has little left to do.
A resumed import starts the writer at the checkpoint's offset (`start`); `on_chunk` lets the
checkpointer look in after every chunk, and `sync` makes everything written so far durable.
Runs in the transfer thread; `importer.transfer` drives it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from importer.blockio import no_space_guard, zero_range
from importer.errors import ImageTooLarge
from importer.reader import Reader

CHUNK = 1 << 20
BLOCK = 64 << 10
_ZEROS = bytes(CHUNK)
_ZERO_BLOCK = _ZEROS[:BLOCK]
WRITEBACK_EVERY = 32 << 20


def is_zero(data: bytes | memoryview, start: int, end: int) -> bool:
    """Whether `data[start:end]` is all zero bytes, compared with memcmp and, where it can be, without a copy:
    `bytes.startswith` compares in place, so a `bytes` object, or a view of a whole one (how the qcow2
    stream hands over a cluster as it was read), is not copied; any other view is copied first (comparing
    memoryviews is ~50x slower than memcmp). The copies this avoids were ~5% of the importer's CPU.
    `end - start` is at most `CHUNK`."""
    zeros = _ZERO_BLOCK if end - start == BLOCK else _ZEROS[:end - start]  # a slice of _ZEROS is a new object
    if isinstance(data, memoryview):
        whole = data.obj
        if type(whole) is not bytes or len(whole) != data.nbytes or not data.c_contiguous:
            return bytes(data[start:end]) == zeros
        data = whole  # a contiguous view as long as the bytes object it shows starts at its byte 0
    return data.startswith(zeros, start)


class WritebackPacer:
    """Every `every` bytes written, ask the kernel to write the touched range back and drop it from the
    page cache (`POSIX_FADV_DONTNEED` starts writeback of dirty pages and releases clean ones)."""

    def __init__(self, fd: int, every: int = WRITEBACK_EVERY) -> None:
        self._fd = fd
        self._every = every
        self._pending = 0
        self._low: int | None = None
        self._high = 0

    def wrote(self, offset: int, length: int) -> None:
        self._low = offset if self._low is None else min(self._low, offset)
        self._high = max(self._high, offset + length)
        self._pending += length
        if self._pending >= self._every:
            os.posix_fadvise(self._fd, self._low, self._high - self._low, os.POSIX_FADV_DONTNEED)
            self._low, self._high, self._pending = None, 0, 0


class WriteQueue:
    """Positioned writes on one background thread, at most `depth` waiting; a failed write is raised
    from the next `write`, `drain` or from `close`. `write_now` writes on the calling thread instead
    (for threads that are themselves workers)."""

    def __init__(self, fd: int, *, depth: int = 16) -> None:
        self._fd = fd
        self._depth = depth
        self._pacer = WritebackPacer(fd)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def write(self, buffers: list[memoryview], at: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="disk-writer")
        self._pending.append(self._pool.submit(self.write_now, buffers, at))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def write_now(self, buffers: list[memoryview], at: int) -> None:
        while buffers:
            done = os.pwritev(self._fd, buffers, at)
            with self._lock:
                self._pacer.wrote(at, done)
            at += done
            buffers = _advance(buffers, done)

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Stop the writer thread (after `drain`, or dropping queued writes after a failure)."""
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _advance(buffers: list[memoryview], done: int) -> list[memoryview]:
    """The part of an iovec list a short write left unwritten."""
    while buffers and done >= len(buffers[0]):
        done -= len(buffers[0])
        buffers = buffers[1:]
    if buffers and done:
        buffers = [buffers[0][done:], *buffers[1:]]
    return buffers


class SparseWriter:
    def __init__(self, fd: int, *, block_device: bool, sparse: bool, limit: int,
                 what: str, on_progress: Callable[[int], None] | None = None, start: int = 0,
                 on_chunk: Callable[[SparseWriter], None] | None = None) -> None:
        self._fd = fd
        self._block = block_device
        self._sparse = sparse
        self._limit = limit
        self._what = what
        self._on_progress = on_progress
        self._on_chunk = on_chunk
        self.offset = start
        self._pending_zero_start: int | None = None
        self._queue = WriteQueue(fd)

    def copy_from(self, reader: Reader) -> int:
        """Copy the whole stream; returns its length (the raw image's virtual size)."""
        try:
            while chunk := reader.read(CHUNK):
                self._write_chunk(chunk)
                if self._on_chunk is not None:
                    self._on_chunk(self)
            self._flush_zeros()
            self._queue.drain()
            if not self._block:
                os.ftruncate(self._fd, self.offset)
            os.fsync(self._fd)
        except OSError as e:
            raise no_space_guard(e, self._what) from e
        finally:
            self._queue.close()
        return self.offset

    def sync(self) -> int:
        """Make every byte up to `offset` durable (zeros skipped on a block device written, queued
        writes done, fsync); returns that offset."""
        try:
            self._flush_zeros()
            self._queue.drain()
            os.fsync(self._fd)
        except OSError as e:
            raise no_space_guard(e, self._what) from e
        return self.offset

    def _write_chunk(self, chunk: bytes) -> None:
        end = self.offset + len(chunk)
        if end > self._limit:
            raise ImageTooLarge(
                f"image size is larger than the reported available storage {self._limit}: at least {end} "
                f"bytes after decompression. A larger PVC is required")
        view = memoryview(chunk)
        if not self._sparse:
            self._queue.write([view], self.offset)
        elif chunk == _ZEROS[:len(chunk)]:
            self._skip(self.offset)
        else:
            run_start: int | None = None
            for start in range(0, len(view), BLOCK):
                if is_zero(chunk, start, min(start + BLOCK, len(chunk))):
                    if run_start is not None:
                        self._queue.write([view[run_start:start]], self.offset + run_start)
                        run_start = None
                    self._skip(self.offset + start)
                elif run_start is None:
                    self._flush_zeros(self.offset + start)
                    run_start = start
            if run_start is not None:
                self._queue.write([view[run_start:]], self.offset + run_start)
        self.offset = end
        if self._on_progress is not None:
            self._on_progress(end)

    def _skip(self, at: int) -> None:
        if self._pending_zero_start is None:
            self._pending_zero_start = at

    def _flush_zeros(self, upto: int | None = None) -> None:
        start = self._pending_zero_start
        if start is None:
            return
        end = self.offset if upto is None else upto
        if self._block:
            zero_range(self._fd, start, end - start)
        self._pending_zero_start = None
