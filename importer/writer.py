"""Streams bytes from a reader onto a file or block device, skipping zero blocks.

Zero detection is per 64 KiB block: all-zero blocks are not written, so targets stay sparse and time
follows the data, not the virtual size. On a fresh file, skipped ranges are holes (a final ftruncate
sets the length). On a block device, which may hold old data, skipped ranges are zeroed by punching
holes (falling back to writing zeros). With `sparse=False` every byte is written (preallocated block
targets). A byte `limit` stops oversized and decompression-bomb streams before they overrun the target.
Runs in the transfer thread; `importer.transfer` drives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from importer.blockio import no_space_guard, zero_range
from importer.errors import ImageTooLarge
from importer.formats import Reader

CHUNK = 1 << 20
BLOCK = 64 << 10
_ZEROS = bytes(CHUNK)


class SparseWriter:
    def __init__(self, fd: int, *, block_device: bool, sparse: bool, limit: int,
                 what: str, on_progress: Callable[[int], None] | None = None) -> None:
        self._fd = fd
        self._block = block_device
        self._sparse = sparse
        self._limit = limit
        self._what = what
        self._on_progress = on_progress
        self.offset = 0
        self._pending_zero_start: int | None = None

    def copy_from(self, reader: Reader) -> int:
        """Copy the whole stream; returns its length (the raw image's virtual size)."""
        try:
            while chunk := reader.read(CHUNK):
                self._write_chunk(chunk)
            self._flush_zeros()
            if not self._block:
                os.ftruncate(self._fd, self.offset)
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
            self._write(view, self.offset)
        elif chunk == _ZEROS[:len(chunk)]:
            self._skip(self.offset)
        else:
            for start in range(0, len(view), BLOCK):
                block = view[start:start + BLOCK]
                if block == _ZEROS[:len(block)]:
                    self._skip(self.offset + start)
                else:
                    self._flush_zeros(self.offset + start)
                    self._write(block, self.offset + start)
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

    def _write(self, data: memoryview, at: int) -> None:
        while data:
            written = os.pwrite(self._fd, data, at)
            data = data[written:]
            at += written
