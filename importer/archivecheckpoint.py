"""Checkpoints of an archive import (content type `archive`): what a restarted importer needs to go on
extracting a tar into the volume's staging directory, and the hook that records it.

`importer.archive` extracts member by member and marks the points its tar stream can be taken up at
again: the header of the next member, or a byte inside a regular file's data (a 10 GiB disk.img in a
tar does not start over). `ArchiveState` is the mark: the tar stream offset, the file being written
and how much of it is on the volume, the size budget used, plus the decoded bytes read past the mark
(`tar_carry`: the decoder restarts at its own boundaries, the tar stream at marks, and what lies
between is kept). `ArchiveCheckpoints.offer` runs at marks and after every read of the tar stream:
when a record is due and the decoder can restart here (as `importer.checkpointing.writer_hook` does
for a disk: raw at any read, gzip at a DEFLATE block end, xz at a block end, zstd at a frame end), it
syncs the staging directory's file system (syncfs) and saves the wire offset, the decoder state, the
checksum state and the mark, JSON in the record's `archive_state`. The record's `target_offset` is
the decoded tar stream's offset (what a gzip restart state is checked against).

`importer.transfer` builds the hook for a fresh or resumed extraction; the record itself and its store
are `importer.checkpoint`, the decision to resume `importer.resume`.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from importer.checkpoint import CheckpointCorrupt
from importer.checkpointing import CheckpointPlan, Meter
from importer.formats import DecompressingReader, PrefixReader

log = logging.getLogger(__name__)
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass
class ArchiveState:
    """Where an extraction can be taken up again (mutable while extracting; records take copies)."""

    available: int  # the size budget of the first attempt (a restart sees less free space: its own files)
    used: int = 0  # regular-file bytes counted against it, whole members as they start
    members: int = 0  # members extracted before the mark
    tar_offset: int = 0  # the mark: the next member's header, or the next byte of `file`'s data
    file: str | None = None  # the regular file being written at the mark (staging-relative)
    file_size: int = 0
    file_written: int = 0
    file_mode: int = 0
    file_mtime: float = 0.0
    data_offset: int = 0  # tar offset of the file's first data byte
    tar_carry: bytes = b""  # decoded bytes read past the mark

    @property
    def next_header(self) -> int:
        """Where the member after `file` begins (its data padded to 512 bytes)."""
        return self.data_offset + (self.file_size + 511) // 512 * 512

    def to_json(self) -> str:
        doc = asdict(self)
        doc["tar_carry"] = base64.b64encode(self.tar_carry).decode()
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchiveState:
        try:
            doc = json.loads(text)
            doc["tar_carry"] = base64.b64decode(doc["tar_carry"], validate=True)
            state = cls(**doc)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointCorrupt(f"unreadable archive checkpoint: {type(e).__name__}: {e}") from e
        ints = (state.available, state.used, state.members, state.tar_offset, state.file_size, state.file_written,
                state.data_offset)
        if not all(isinstance(n, int) and n >= 0 for n in ints) or state.file_written > state.file_size:
            raise CheckpointCorrupt("unreadable archive checkpoint: offsets must be non-negative and consistent")
        return state


def sync_volume(path: Path) -> None:
    """Make what was written under `path` durable: syncfs of its file system (all of it, in one call)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs = getattr(_LIBC, "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class ArchiveCheckpoints:
    """The records of one extraction. `layers` are the readers from the wire up (`OpenedImage.layers`)."""

    def __init__(self, plan: CheckpointPlan, meter: Meter, layers: tuple[PrefixReader | DecompressingReader, ...],
                 root: Path) -> None:
        self._checkpointer = plan.checkpointer
        self._meter = meter
        self._wire = layers[0]
        self._decoder = layers[1] if len(layers) == 3 else None
        self._decoded = layers[2] if len(layers) == 3 else None
        self._usable = len(layers) in (1, 3) and plan.source_points is None
        self.root = root

    @property
    def saved(self) -> int:
        return self._checkpointer.saved

    def offer(self, mark: Callable[[], ArchiveState], tar_position: int) -> None:
        """A consistent point of the tar stream (`mark()`: its state); record it if due and possible."""
        checkpointer, meter = self._checkpointer, self._meter
        if not self._usable or not checkpointer.due(meter.count):
            return
        if isinstance(self._decoded, PrefixReader) and self._decoded.pending:
            return
        decoder = self._decoder
        restart = decoder.boundary() if isinstance(decoder, DecompressingReader) else b""
        if restart is None:
            return  # not at a decoder boundary: the next read stops at one (gzip) or a later read gets there
        assert isinstance(self._wire, PrefixReader)
        carry = restart + self._wire.pending
        started = checkpointer.now()
        sync_volume(self.root)
        state = decoder.state() if isinstance(decoder, DecompressingReader) else b""
        checkpointer.archive_state = mark().to_json()
        checkpointer.save(meter.count, tar_position, carry, meter.hash_state(), started, state)

    def finished(self) -> None:
        """The archive is in place: its records are of no more use."""
        self._checkpointer.store.clear()
        log.info("wrote %d archive checkpoints in %.3f s", self._checkpointer.saved, self._checkpointer.seconds)
