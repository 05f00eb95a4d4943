"""The mark an archive extraction can be taken up again at (`ArchiveState`), kept as JSON in a checkpoint
record's `archive_state`: written by `importer.archivecheckpoint`, continued by `importer.archive`,
and read by `importer.resume`, which starts over with the reason when a record's mark is unreadable.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass

from importer.checkpoint import CheckpointCorrupt


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
