"""Positioned writes of guest data onto the target, skipping zero blocks and batching neighbours.

The streaming qcow2 reader produces guest clusters in host order, which is usually, but not always,
guest order. `DiskOutput` writes each non-zero 64 KiB block at its guest offset, gathering runs of
adjacent blocks into one `pwritev` so a contiguous image costs a few large writes rather than one
per cluster. A fresh file target starts as one hole; a block device, which may hold old data, is
zeroed first (by punching holes where it can), exactly as the sparse stream writer treats skipped
ranges. Runs are written by `importer.writer.WriteQueue`'s background thread, inflated clusters by
the inflate workers themselves. Driven by `importer.qcow2stream.engine`; `importer.writer.SparseWriter`
is its sequential sibling.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from importer.blockio import no_space_guard, write_zeros, zero_range
from importer.writer import BLOCK, WriteQueue, is_zero

_RUN_LIMIT = 4 << 20
_IOV_LIMIT = 512
_QUEUE_DEPTH = 8  # runs waiting for the writer thread: at most 32 MiB


class DiskOutput:
    def __init__(self, fd: int, *, block_device: bool, sparse: bool, virtual_size: int, what: str) -> None:
        self._fd = fd
        self._block = block_device
        self._sparse = sparse
        self.virtual_size = virtual_size
        self._what = what
        self._run: list[memoryview] = []
        self._run_start = 0
        self._run_end = 0
        self._queue = WriteQueue(fd, depth=_QUEUE_DEPTH)
        self.high_water = 0  # where the furthest guest data handed to us so far ends
        self._guard: tuple[int, Callable[[], None]] | None = None

    def prepare(self) -> None:
        """Make every guest byte read as zero before data arrives."""
        try:
            if self._block and self._sparse:
                zero_range(self._fd, 0, self.virtual_size)
            elif self._block or not self._sparse:
                write_zeros(self._fd, 0, self.virtual_size)
        except OSError as e:
            raise no_space_guard(e, self._what) from e

    def guard(self, offset: int, before: Callable[[], None]) -> None:
        """Call `before` once, before the first guest data at or past `offset` is written (a Block
        volume's checkpoint slots live there: they are cleared before the disk's bytes reach them)."""
        self._guard = (offset, before)
        self.reach(0)

    def reach(self, end: int) -> None:
        """Guest data up to `end` is about to be written (the engine says so before writing or inflating it)."""
        self.high_water = max(self.high_water, min(end, self.virtual_size))
        if self._guard is not None and self.high_water > self._guard[0]:
            before, self._guard = self._guard[1], None
            before()

    def sync(self) -> int:
        """Make everything handed over so far durable; returns the high-water mark."""
        self.flush()
        try:
            self._queue.drain()
            os.fsync(self._fd)
        except OSError as e:
            raise no_space_guard(e, self._what) from e
        return self.high_water

    def write(self, guest: int, data: bytes | memoryview) -> None:
        """Write guest bytes at `guest`, clipped to the virtual size; zero blocks are skipped."""
        length = min(len(data), self.virtual_size - guest)
        if length <= 0:
            return
        view = memoryview(data)[:length]
        for start in range(0, length, BLOCK):
            block = view[start:start + BLOCK]
            if self._sparse and is_zero(data, start, start + len(block)):
                continue
            self._add(guest + start, block)

    def write_cluster(self, guest: int, data: bytes) -> None:
        """Write one cluster now, from any thread (inflate workers): no batching, zero blocks skipped."""
        length = min(len(data), self.virtual_size - guest)
        view = memoryview(data)
        run_start: int | None = None
        for start in range(0, max(length, 0), BLOCK):
            end = min(start + BLOCK, length)
            if self._sparse and is_zero(data, start, end):
                if run_start is not None:
                    self._pwrite(view[run_start:start], guest + run_start)
                run_start = None
            elif run_start is None:
                run_start = start
        if run_start is not None:
            self._pwrite(view[run_start:length], guest + run_start)

    def _pwrite(self, data: memoryview, at: int) -> None:
        try:
            self._queue.write_now([data], at)
        except OSError as e:
            raise no_space_guard(e, self._what) from e

    def _add(self, at: int, block: memoryview) -> None:
        if self._run and (at != self._run_end or self._run_end - self._run_start >= _RUN_LIMIT
                          or len(self._run) >= _IOV_LIMIT):
            self.flush()
        if not self._run:
            self._run_start = self._run_end = at
        self._run.append(block)
        self._run_end += len(block)

    def flush(self) -> None:
        """Hand the current run to the writer thread."""
        if self._run:
            run, self._run = self._run, []
            try:
                self._queue.write(run, self._run_start)
            except OSError as e:
                raise no_space_guard(e, self._what) from e

    def finish(self) -> None:
        """Flush, set a file's length to the virtual size and make it durable. A guard inside the disk
        that never fired fires now: nothing was written there, so its bytes must read as the disk's hole."""
        if self._guard is not None and self._guard[0] < self.virtual_size:
            before, self._guard = self._guard[1], None
            before()
        self.flush()
        try:
            self._queue.drain()
            if not self._block:
                os.ftruncate(self._fd, self.virtual_size)
            os.fsync(self._fd)
        except OSError as e:
            raise no_space_guard(e, self._what) from e

    def close(self) -> None:
        """Stop the writer thread; queued writes are dropped if `finish` was not reached."""
        self._queue.close()
