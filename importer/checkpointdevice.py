"""Checkpoint records on a Block volume, which has no file system to hold a file: two alternating
512 KiB slots in the device's last MiB (`DeviceTailStore`).

Why there: the device is the only storage a Block-volume importer pod has that survives its restart,
and its end is the last place an image's data reaches (the writer goes front to back). Each slot
holds a magic, a sequence number, the payload's length and SHA-256, then the record's JSON; `save`
writes the slot the previous record is not in and fsyncs the device, so a kill mid-write leaves the
other slot intact, and `load` takes the valid slot with the higher sequence number. Records are kept
only while the synced data ends before the slots; once the image's data reaches them, checkpoints
stop (the last stretch of a device-filling image is not resumable), and image bytes written over a
slot simply make it invalid. On completion, slots past the end of the imported disk are zeroed, so
nothing of ours is left on the volume; slots the image covers are left alone (they are image data).
An upload pod's store also names where a qcow2 upload keeps the image ranges its restart reads again
(`ranges_path`, on the pod's scratch volume: the slots have no room for them), and `clear` removes
them with the record. Used by `importer.main` for Block volumes; `importer.checkpoint` is the
file-based sibling.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from importer.checkpoint import TAIL_SUFFIXES, Checkpoint, CheckpointCorrupt

SLOT = 512 << 10
DEVICE_RANGES_NAME = ".disk.checkpoint.ranges"  # on the upload pod's scratch volume
DEVICE_TAIL_BASE = ".disk.checkpoint"  # + TAIL_SUFFIXES: a compressed upload's kept bytes, there too
RESERVED = 2 * SLOT
_MAGIC = b"PYCDICKP"
_HEAD = len(_MAGIC) + 8 + 4 + 32


class DeviceTailStore:
    def __init__(self, device: Path, size: int, ranges_path: Path | None = None) -> None:
        self.device = device
        self.ranges_path = ranges_path
        self._size = size
        self._sequence = 0

    @property
    def usable(self) -> bool:
        return self._size >= 4 * RESERVED

    @property
    def limit(self) -> int:
        """Records are kept only for data that ends before this offset."""
        return self._size - RESERVED

    @property
    def data_limit(self) -> int | None:
        return self.limit

    def _slot(self, index: int) -> int:
        return self.limit + index * SLOT

    def load(self) -> Checkpoint | None:
        """The newest intact record; None when neither slot holds one."""
        if not self.usable:
            return None
        found: list[tuple[int, bytes]] = []
        fd = os.open(self.device, os.O_RDONLY)
        try:
            for index in (0, 1):
                slot = os.pread(fd, SLOT, self._slot(index))
                if parsed := _parse(slot):
                    found.append(parsed)
        finally:
            os.close(fd)
        if not found:
            return None
        self._sequence, payload = max(found)
        try:
            return Checkpoint.from_json(payload.decode())
        except UnicodeDecodeError as e:
            raise CheckpointCorrupt(f"unreadable checkpoint on {self.device}: {e}") from e

    def save(self, record: Checkpoint) -> bool:
        payload = record.to_json().encode()
        if not self.usable or record.target_offset > self.limit or _HEAD + len(payload) > SLOT:
            return False
        self._sequence += 1
        digest = hashlib.sha256(payload).digest()
        slot = _MAGIC + self._sequence.to_bytes(8, "little") + len(payload).to_bytes(4, "little") + digest + payload
        self._write(self._slot(self._sequence % 2), slot)
        return True

    def clear(self, data_end: int | None = None) -> None:
        if self.ranges_path is not None:
            for path in (self.ranges_path, self.ranges_path.with_name(self.ranges_path.name + ".tmp"),
                         *(self.ranges_path.with_name(DEVICE_TAIL_BASE + s) for s in TAIL_SUFFIXES)):
                path.unlink(missing_ok=True)
        if not self.usable:
            return
        for index in (0, 1):
            if data_end is None or self._slot(index) >= data_end:
                self._write(self._slot(index), bytes(SLOT))
        self._sequence = 0

    def _write(self, offset: int, data: bytes) -> None:
        fd = os.open(self.device, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)


def _parse(slot: bytes) -> tuple[int, bytes] | None:
    """(sequence, payload) of an intact slot."""
    if not slot.startswith(_MAGIC):
        return None
    at = len(_MAGIC)
    sequence = int.from_bytes(slot[at:at + 8], "little")
    length = int.from_bytes(slot[at + 8:at + 12], "little")
    digest, payload = slot[at + 12:_HEAD], slot[_HEAD:_HEAD + length]
    if length > SLOT - _HEAD or hashlib.sha256(payload).digest() != digest:
        return None
    return sequence, payload
