"""Checkpoints of an archive import (content type `archive`): what a restarted importer needs to go on
extracting a tar into the volume's staging directory, and the hook that records it.

`importer.archive` extracts member by member and marks the points its tar stream can be taken up at
again: the header of the next member, or a byte inside a regular file's data (a 10 GiB disk.img in a
tar does not start over). `ArchiveState` (`importer.archivestate`) is the mark: the tar stream offset,
the file being written and how much of it is on the volume, the size budget used, plus the decoded
bytes read past the mark (`tar_carry`: the decoder restarts at its own boundaries, the tar stream at
marks, and what lies between is kept). `ArchiveCheckpoints.offer` runs at marks and after every read of
the tar stream: when a record is due and the decoder can restart here (as
`importer.checkpointing.writer_hook` does for a disk: raw at any read, gzip at a DEFLATE block end, xz
at a block end, zstd at a frame end), it syncs the staging directory's file system (syncfs) and saves
the wire offset, the decoder state, the checksum state and the mark, JSON in the record's
`archive_state`. The record's `target_offset` is the decoded tar stream's offset (what a gzip restart
state is checked against).

`importer.transfer` builds the hook for a fresh or resumed extraction; the record itself and its store
are `importer.checkpoint`, the decision to resume `importer.resume`.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from pathlib import Path

from importer.archivestate import ArchiveState
from importer.checkpointing import CheckpointPlan, Meter
from importer.formats import DecompressingReader, PrefixReader

log = logging.getLogger(__name__)
_LIBC = ctypes.CDLL(None, use_errno=True)


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
