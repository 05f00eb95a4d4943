"""The wire tail: the compressed bytes of a resumable upload that a restarted decoder would need again,
kept durably beside the checkpoint record, so that a new upload server feeds them to its pipeline
itself and the client re-sends at most the chunk it was sending.

A compressed upload's record lies at a decoder restart point (a DEFLATE block, xz block or zstd frame
boundary), usually some way before the end of the last chunk acknowledged. Every byte the pipeline
takes from the upload's feed is appended here (`recording`), and a chunk's 200 waits until they are
fsynced (`seal`, `importer.uploadserver.resumable`). A new server reads the bytes from the record's
wire offset on (`scan`), feeds them first (`replay`) and reports where they end as the upload's
offset. Raw and qcow2 uploads need none of this (their records cover each acknowledged chunk): their
tail is discarded as soon as the pipeline has detected the format.

Files: two append logs beside the record (`<record>.tail.0`, `.tail.1`; for a Block volume on the
upload pod's scratch volume, next to the kept qcow2 ranges), each a magic line then entries (wire
offset, length, CRC-32, bytes). At each chunk's end, once a record at or past the start of the newer
file exists, the older file is removed and the newer becomes the older one (the next bytes go to a new
file): so the tail holds about a chunk plus the stretch back to the record. A kill can tear only the
entry being appended, and a lost power can lose what was never fsynced (never acknowledged): `scan`
takes the entries whose CRC matches, contiguous from the record's offset, and says why it stopped
early (the server then resumes where the intact bytes end, at worst at the record itself: never at
wrong bytes). Past `TAIL_LIMIT` bytes (no restart point for that long: a single-block xz, a
single-frame zstd), the tail is removed and a restart resumes at the record, as without one.

The upload server (`importer.uploadserver.resumable`) removes the files when a fresh upload starts,
when the pipeline ends and no record remains (it succeeded or failed; a stopped server keeps both),
and when the client abandons the upload. The bytes are never trusted beyond this: the checksum, the
decoder's own checks and every safety rule see them as they saw the client's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from importer.checkpoint import TAIL_SUFFIXES

log = logging.getLogger(__name__)

MAGIC = b"PYCDI-WIRE-TAIL-1\n"
ENTRY = struct.Struct(">QII")  # wire offset, length, crc32 of the bytes
TAIL_LIMIT = 256 << 20  # compressed bytes kept at most; past it a restart resumes at the record
ENTRY_LIMIT = 64 << 20  # an entry claiming more is torn (pieces are far smaller)
REPLAY_PIECE = 1 << 20


@dataclass(frozen=True)
class Span:
    """Bytes [wire, wire + length) of the upload, at `position` in file `index`."""

    index: int
    position: int
    wire: int
    length: int


@dataclass(frozen=True)
class Found:
    """What a new server found kept for a record at wire offset `start`: intact bytes up to `end`."""

    start: int
    end: int
    spans: tuple[Span, ...] = ()
    problem: str | None = None  # why the kept bytes stop before the files do


class WireTail:
    """One upload's tail. Everything runs on the event loop, except the fsyncs `seal` hands to a thread."""

    def __init__(self, base: Path, limit: int = TAIL_LIMIT) -> None:
        self.paths = tuple(base.with_name(base.name + suffix) for suffix in TAIL_SUFFIXES)
        self.limit = limit
        self.enabled = True
        self._fds: list[int | None] = [None, None]
        self._first: list[int | None] = [None, None]  # the wire offset of each file's first entry
        self._current = 0  # the file appended to
        self._end = 0  # the wire offset the next byte appended has
        self._size = [0, 0]  # bytes in each file
        self._dirty: set[int] = set()  # files written since their last fsync
        self._new_file = False  # a file was created since the directory's last fsync
        self._scanned: tuple[tuple[object, ...], Found] | None = None
        self._appended = asyncio.Event()

    @property
    def end(self) -> int:
        return self._end

    # -- a new server: what is there, and continuing it ------------------------------------------------

    def scan(self, start: int) -> Found:
        """The intact bytes kept from wire offset `start` on (read again only when the files changed)."""
        key = (start, *(_signature(path) for path in self.paths))
        if self._scanned is not None and self._scanned[0] == key:
            return self._scanned[1]
        entries: list[Span] = []
        problems: list[str] = []
        for index, path in enumerate(self.paths):
            spans, problem = _read_entries(path, index)
            entries += spans
            if problem:
                problems.append(problem)
        found = _chain(start, sorted(entries, key=lambda s: s.wire), problems)
        self._scanned = (key, found)
        return found

    def adopt(self, found: Found) -> None:
        """Continue the files a `scan` found: cut each after the last entry the chain uses, append after it."""
        self.close()
        last: dict[int, Span] = {}
        for span in found.spans:
            last[span.index] = span
        for index, path in enumerate(self.paths):
            kept = last.get(index)
            if kept is None:
                path.unlink(missing_ok=True)
                self._first[index], self._size[index] = None, 0
                continue
            size = kept.position + kept.length  # the end of the last entry the chain uses
            os.truncate(path, size)
            self._first[index] = min(s.wire for s in found.spans if s.index == index)
            self._size[index] = size
        self._end = found.end
        self._current = found.spans[-1].index if found.spans else 0
        if self._first[self._current] is not None:
            self._fds[self._current] = os.open(self.paths[self._current], os.O_WRONLY | os.O_APPEND)
        self._scanned = None

    async def replay(self, found: Found) -> AsyncIterator[bytes]:
        """The kept bytes [found.start, found.end), in pieces, for the pipeline before the client's."""
        for span in found.spans:
            done = 0
            while done < span.length:
                size = min(REPLAY_PIECE, span.length - done)
                piece = await asyncio.to_thread(_pread, self.paths[span.index], span.position + done, size)
                if len(piece) != size:
                    raise OSError(f"the kept bytes at wire offset {span.wire + done} became shorter")
                done += size
                yield piece

    # -- the server receiving: appending, sealing, rotating --------------------------------------------

    def reset(self, start: int = 0) -> None:
        """Whatever an earlier upload kept goes; the next byte appended is the one at wire offset `start`
        (0 for a fresh upload; a record's offset when one is continued without kept bytes)."""
        self.clear()
        self.enabled = True
        self._end = start

    async def recording(self, chunks: AsyncIterator[bytes], counted: Callable[[], int]) -> AsyncIterator[bytes]:
        """The pipeline's pieces, each appended here as the pipeline takes it; `counted()`: the wire offset
        the feed has counted up to, including the piece just taken (a mismatch gives the tail up rather
        than label bytes with the wrong offset)."""
        async for piece in chunks:
            if self.enabled and counted() != self._end + len(piece):
                self.discard(f"the feed is at wire offset {counted()}, the kept bytes at {self._end + len(piece)}")
            self.append(piece)
            yield piece

    def append(self, piece: bytes) -> None:
        if not self.enabled:
            self._end += len(piece)
            return
        index = self._current
        try:
            fd = self._fds[index]
            if fd is None:
                fd = os.open(self.paths[index], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                self._fds[index], self._first[index], self._size[index] = fd, self._end, len(MAGIC)
                self._new_file = True
                _write_all(fd, MAGIC)
            _write_all(fd, ENTRY.pack(self._end, len(piece), zlib.crc32(piece)) + piece)
        except OSError as e:
            self._end += len(piece)
            self.discard(f"the compressed bytes could not be kept beside the record: {e}")
            return
        self._end += len(piece)
        self._size[index] += ENTRY.size + len(piece)
        self._dirty.add(index)
        self._appended.set()
        if self.kept() > self.limit:
            self.discard(f"more than {self.limit} compressed bytes arrived since the decoder's last restart point")

    def kept(self) -> int:
        firsts = [first for first in self._first if first is not None]
        return self._end - min(firsts) if firsts else 0

    async def seal(self, reached: int, record: int) -> bool:
        """Before a chunk ending at wire offset `reached` is acknowledged: the bytes up to it durable
        (False: not kept, the tail was given up); then, the newest record being at wire offset `record`,
        drop what only older records needed."""
        if not self.enabled:
            return False
        while self._end < reached:  # the pipeline takes a piece and records it in the same step
            self._appended.clear()
            try:
                await asyncio.wait_for(self._appended.wait(), 5.0)
            except TimeoutError:
                self.discard(f"the bytes up to wire offset {reached} did not reach it (at {self._end})")
                return False
        fds = [fd for index, fd in enumerate(self._fds) if fd is not None and index in self._dirty]
        directory = self.paths[0].parent if self._new_file else None
        self._dirty.clear()
        self._new_file = False
        try:
            await asyncio.to_thread(_sync, fds, directory)
        except OSError as e:
            self.discard(f"the compressed bytes kept beside the record could not be synced: {e}")
            return False
        self._rotate(record)
        return True

    def _rotate(self, record: int) -> None:
        older = 1 - self._current
        first = self._first[self._current]
        if self._first[older] is not None and first is not None and record >= first:
            self._drop(older)
        if self._first[older] is None and first is not None and self._end > first and not self._dirty:
            fd = self._fds[self._current]
            if fd is not None:
                os.close(fd)
            self._fds[self._current] = None
            self._current = older  # the next byte starts a new file there

    def _drop(self, index: int) -> None:
        fd = self._fds[index]
        if fd is not None:
            os.close(fd)
        self._fds[index], self._first[index], self._size[index] = None, None, 0
        self.paths[index].unlink(missing_ok=True)

    def discard(self, why: str | None) -> None:
        """No more tail for this upload (a restart resumes at the record); `why` is logged."""
        if self.enabled and why:
            log.warning("a restart of the upload server would resume at the last checkpoint record, not at the "
                        "last chunk acknowledged: %s", why)
        self.enabled = False
        self.clear(keep_enabled=False)

    def close(self) -> None:
        for index, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
            self._fds[index] = None

    def clear(self, keep_enabled: bool = True) -> None:
        """Remove the files (the upload finished, was abandoned, or starts over)."""
        self.close()
        for index, path in enumerate(self.paths):
            path.unlink(missing_ok=True)
            self._first[index], self._size[index] = None, 0
        self._dirty.clear()
        self._current, self._scanned = 0, None
        if not keep_enabled:
            self.enabled = False


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_entries(path: Path, index: int) -> tuple[list[Span], str | None]:
    """The intact entries of one file (as spans of whole entries), and why reading stopped early."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return [], None
    spans: list[Span] = []
    with f:
        if f.read(len(MAGIC)) != MAGIC:
            return [], f"{path.name} is not a file of kept wire bytes"
        position = len(MAGIC)
        while head := f.read(ENTRY.size):
            if len(head) < ENTRY.size:
                return spans, f"{path.name} ends inside an entry's header at byte {position}"
            wire, length, crc = ENTRY.unpack(head)
            data = f.read(min(length, ENTRY_LIMIT + 1))
            if length > ENTRY_LIMIT or len(data) < length or zlib.crc32(data) != crc:
                return spans, f"{path.name} has a torn or damaged entry for wire offset {wire} at byte {position}"
            spans.append(Span(index, position + ENTRY.size, wire, length))
            position += ENTRY.size + length
    return spans, None


def _chain(start: int, entries: list[Span], problems: list[str]) -> Found:
    """The entries that hold the upload's bytes contiguously from `start` (trimmed to begin there)."""
    at, spans = start, []
    for span in entries:
        if span.wire + span.length <= at:
            continue
        if span.wire > at:
            problems.append(f"no kept bytes at wire offset {at} (the next kept ones begin at {span.wire})")
            break
        skip = at - span.wire
        spans.append(Span(span.index, span.position + skip, at, span.length - skip))
        at = span.wire + span.length
    if not spans and not entries and not problems:
        return Found(start, start)
    if not spans and entries and not problems:
        problems.append(f"the kept bytes end at wire offset {entries[-1].wire + entries[-1].length}, "
                        f"before the record's {start}")
    return Found(start, at, tuple(spans), "; ".join(problems) or None)


def _pread(path: Path, position: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, position)
    finally:
        os.close(fd)


def _sync(fds: list[int], directory: Path | None) -> None:
    for fd in fds:
        os.fdatasync(fd)  # the data and the file's length, which is all `scan` reads back
    if directory is not None:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view):]
