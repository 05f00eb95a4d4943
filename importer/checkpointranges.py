"""The range store: the bytes of a qcow2 image that a restart reads again, kept on the volume beside
the checkpoint record, for uploads, whose source (the client) cannot be asked for byte ranges.

A qcow2 record names ranges of the image (`importer.qcow2stream.restart.RestartRecord`): the header
and L1 table, the L2 and refcount table clusters already passed, the first part of a compressed
cluster the checkpoint cuts, the clusters spooled for a later L2 table. The table clusters are
known as soon as the L1 table has been read, so `RangeStore.passed` keeps them as the stream goes by;
the cut cluster and the spool are the converter's own (`Qcow2Stream.restart_pieces`). `keep` makes
them durable before the record that names them is written (`importer.checkpointing.Qcow2Checkpoints`:
data fsynced, then this file, then the record), so whichever record a kill leaves, its ranges are
here. It refuses (and the checkpoint is skipped, with the reason in the log) when a record would
need more than `limit` bytes.

File: `.disk.img.checkpoint.ranges` beside the record, a magic line, then entries appended at each
checkpoint (start, length, CRC32, bytes); a torn last entry is ignored. When old entries (the cut
clusters and spooled clusters of earlier records) outweigh what the last two records need, the file
is rewritten with only those (temporary file, fsync, rename, fsync of the directory). The record's
store removes it with the record (`CheckpointStore.clear`: the upload completed or was abandoned).

`LocalRanges` reads it for `importer.checkpointrestart.rebuild` (the import's counterpart asks the
source). Used by `importer.uploadserver`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from importer.checkpoint import RANGES_SUFFIX
from importer.qcow2stream.engine import reftable_clusters
from importer.qcow2stream.layout import Layout

log = logging.getLogger(__name__)


class RangesUnavailable(Exception):
    """The bytes of a named range cannot be had (the source changed, the kept copy is missing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


MAGIC = b"PYCDI-QCOW2-RANGES-1\n"
ENTRY = struct.Struct(">QII")  # start, length, crc32 of the bytes
RANGE_STORE_LIMIT = 64 << 20  # as much as the L2 tables one pass may hold (TABLE_MEMORY_LIMIT)
COMPACT_SLACK = 1 << 20

Ranges = Sequence[tuple[int, int]]


class RangeStore:
    """One upload's kept ranges. `reset`/`resume`, `passed` and `keep` run on the transfer thread;
    `read` on a new server before its pipeline starts."""

    def __init__(self, path: Path, limit: int = RANGE_STORE_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._stored: dict[int, int] = {}  # start -> length of the entries in the file
        self._pending: dict[int, bytes] = {}  # table bytes passed since the last checkpoint
        self._needed: list[tuple[int, int]] = []  # what the last record names
        self._watch: tuple[int, frozenset[int], int] | None = None  # cluster size, table clusters, L1 end
        self._size = 0

    @classmethod
    def beside(cls, record_path: Path, limit: int = RANGE_STORE_LIMIT) -> RangeStore:
        return cls(record_path.with_name(record_path.name + RANGES_SUFFIX), limit)

    def reset(self) -> None:
        """A fresh upload: forget whatever an earlier one kept."""
        self._write_file(self.path, [])
        self._stored, self._pending, self._needed = {}, {}, []

    def resume(self, needed: Ranges) -> None:
        """Continue the file an earlier server wrote; `needed`: what the record being continued names."""
        pieces = self._load()
        self._stored = {start: len(data) for start, data in pieces}
        self._size = self.path.stat().st_size
        self._pending, self._needed = {}, list(needed)

    def watch(self, layout: Layout, tables: Iterable[tuple[int, int]]) -> None:
        """Which clusters to keep as they pass: the L2 tables and refcount table clusters (and [0, L1 end))."""
        cs = layout.cluster_size
        clusters = {offset // cs for _, offset in tables} | set(reftable_clusters(layout))
        self._watch = (cs, frozenset(clusters), layout.l1_end)

    def passed(self, start: int, data: bytes | memoryview) -> None:
        """The converter was fed `data` at host offset `start`: keep it if a restart will want it."""
        if self._watch is None:
            return
        cs, clusters, l1_end = self._watch
        if start // cs in clusters:
            self._pending[start] = bytes(data)
        elif start < l1_end:
            self._pending[start] = bytes(data[:l1_end - start])

    def keep(self, needed: Ranges, pieces: Sequence[tuple[int, bytes]]) -> str | None:
        """Make durable the bytes of `needed` (from the tables passed and `pieces`: the converter's cut
        cluster and spool) before a record names them; or why not (the record must not be written)."""
        total = sum(end - start for start, end in needed)
        if total > self.limit:
            return (f"a restart there would read {total} bytes of the image again, more than the "
                    f"{self.limit} the upload server keeps beside its record")
        fresh = dict(self._pending)
        fresh.update((start, data) for start, data in pieces if self._stored.get(start) != len(data))
        have = [(s, s + n) for s, n in self._stored.items()] + [(s, s + len(d)) for s, d in fresh.items()]
        if gap := _first_gap(needed, have):
            return f"the bytes at {gap[0]}-{gap[1] - 1} of the image were not kept"
        try:
            self._append(fresh)
            self._compact(needed)
        except OSError as e:  # a full volume: no record here, rather than a failed upload
            return f"the image's ranges could not be kept beside the record: {e}"
        self._pending.clear()
        self._needed = list(needed)
        return None

    def read(self, ranges: Ranges) -> dict[int, bytes]:
        """The bytes of each range (keyed by start); raises `RangesUnavailable`."""
        try:
            pieces = sorted(self._load())
        except FileNotFoundError as e:
            raise RangesUnavailable("the image's tables kept beside the checkpoint are gone") from e
        except OSError as e:
            raise RangesUnavailable(f"the image's tables kept beside the checkpoint could not be read: {e}") from e
        found: dict[int, bytes] = {}
        for start, end in ranges:
            data = _assemble(pieces, start, end)
            if data is None:
                raise RangesUnavailable(f"the image's bytes at {start}-{end - 1} were not kept beside the checkpoint")
            found[start] = data
        return found

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)

    def _load(self) -> list[tuple[int, bytes]]:
        with self.path.open("rb") as f:
            blob = f.read()
        if not blob.startswith(MAGIC):
            raise RangesUnavailable("the file of kept image ranges beside the checkpoint is not ours")
        pieces, at = [], len(MAGIC)
        while at + ENTRY.size <= len(blob):
            start, length, crc = ENTRY.unpack_from(blob, at)
            data = blob[at + ENTRY.size:at + ENTRY.size + length]
            if len(data) < length or zlib.crc32(data) != crc:
                break  # torn by a kill while appending: nothing after it was ever named by a record
            pieces.append((start, data))
            at += ENTRY.size + length
        return pieces

    def _append(self, pieces: Mapping[int, bytes]) -> None:
        if not pieces:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            blob = b"".join(_entry(start, data) for start, data in sorted(pieces.items()))
            try:
                _write_all(fd, blob)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self._size)  # a torn entry would hide every later one from `read`
                raise
        finally:
            os.close(fd)
        self._size += len(blob)
        self._stored.update((start, len(data)) for start, data in pieces.items())

    def _compact(self, needed: Ranges) -> None:
        """Rewrite the file with what this record and the one before it name, when the rest outweighs it."""
        live = [*needed, *self._needed]
        keep = {s: n for s, n in self._stored.items() if any(s < e and b < s + n for b, e in live)}
        kept_bytes = sum(ENTRY.size + n for n in keep.values())
        if self._size - len(MAGIC) - kept_bytes <= max(kept_bytes, COMPACT_SLACK):
            return
        pieces = [(s, d) for s, d in self._load() if keep.get(s) == len(d)]
        temporary = self.path.with_name(self.path.name + ".tmp")
        self._write_file(temporary, pieces)
        os.replace(temporary, self.path)
        _sync_directory(self.path.parent)
        self._stored = {s: len(d) for s, d in pieces}
        log.info("pruned the kept qcow2 ranges to %d bytes in %d pieces", self._size, len(pieces))

    def _write_file(self, path: Path, pieces: Sequence[tuple[int, bytes]]) -> None:
        blob = MAGIC + b"".join(_entry(start, data) for start, data in pieces)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._size = len(blob)


class LocalRanges:
    """`importer.checkpointrestart.RangeFetcher` over a range store on the volume."""

    where = "the ranges kept beside the checkpoint"

    def __init__(self, store: RangeStore) -> None:
        self._store = store

    async def fetch(self, ranges: Sequence[tuple[int, int]]) -> Mapping[int, bytes]:
        return await asyncio.to_thread(self._store.read, ranges)


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view):]


def _entry(start: int, data: bytes) -> bytes:
    return ENTRY.pack(start, len(data), zlib.crc32(data)) + data


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_gap(needed: Ranges, have: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The first part of `needed` no interval of `have` covers (None: all covered)."""
    intervals = sorted(have)
    for start, end in needed:
        at = start
        for low, high in intervals:
            if low > at:
                break
            at = max(at, min(high, end))
            if at >= end:
                break
        if at < end:
            return at, end
    return None


def _assemble(pieces: Sequence[tuple[int, bytes]], start: int, end: int) -> bytes | None:
    """Bytes [start, end) from pieces sorted by start, or None when a part is missing."""
    out, at = bytearray(), start
    for low, data in pieces:
        high = low + len(data)
        if high <= at:
            continue
        if low > at:
            break
        take = min(high, end)
        out += data[at - low:take - low]
        at = take
        if at >= end:
            return bytes(out)
    return None
