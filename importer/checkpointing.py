"""The transfer thread's half of checkpoints: the first record of an attempt (what it imports, or why
a restart cannot continue it), and the hook the writer calls after each chunk, which, when a record
is due and the decoder can restart here, syncs the target and saves the offsets, the bytes read past
the restart point and the checksum's state. Raw images restart at any consistent chunk; compressed
raw images at the end of a gzip member, xz block or zstd frame (`DecompressingReader.boundary`).

`importer.transfer` calls these for a fresh attempt and continues a record in `resume_transfer`;
records and their stores are `importer.checkpoint`, the decision to resume is `importer.resume`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from importer import hashstate
from importer.checkpoint import Checkpoint, Checkpointer, SourceIdentity
from importer.checksum import ChecksumSpec, Hasher
from importer.formats import DecompressingReader, OpenedImage, PrefixReader
from importer.resume import not_resumable_reason
from importer.writer import SparseWriter


@dataclass(frozen=True)
class CheckpointPlan:
    """What a checkpointed import needs to know beyond the bytes: where records go and what the source
    is; `resume` is the record this attempt continues (None: from the start)."""

    checkpointer: Checkpointer
    identity: SourceIdentity | None
    source_resumable: bool
    resume: Checkpoint | None = None


class Meter(Protocol):
    """The wire meter (`importer.transfer.MeteredReader`): bytes read and hashed so far."""

    count: int

    def hash_state(self) -> bytes | None: ...


def resumable_hasher(checksum: ChecksumSpec | None, checkpoints: CheckpointPlan | None) -> Hasher | None:
    """A checksum hasher whose state a record can keep, when checkpoints are on and it can."""
    if checksum is None or checkpoints is None or not hashstate.supported(checksum.algorithm):
        return None
    return hashstate.ResumableHash(checksum.algorithm)


def begin(checkpoints: CheckpointPlan | None, image: OpenedImage, *, archive: bool, checksum: ChecksumSpec | None,
          meter: Meter) -> None:
    """Write this attempt's first record: what it imports, or why a restart cannot continue it."""
    if checkpoints is None:
        return
    why = not_resumable_reason(image.format.value, tuple(c.value for c in image.compression), archive,
                               checkpoints.identity, checkpoints.source_resumable)
    if why is None and checksum is not None and meter.hash_state() is None:
        why = f"the state of a {checksum.algorithm} checksum cannot be saved by this importer"
    checkpoints.checkpointer.begin(Checkpoint(
        checkpoints.identity or SourceIdentity(""), image.format.value,
        image.compression[0].value if image.compression else None, checksum=checksum.text if checksum else "",
        hash_library=hashstate.library_version(), not_resumable=why))


def writer_hook(checkpoints: CheckpointPlan | None, meter: Meter,
                layers: tuple[PrefixReader | DecompressingReader, ...]) -> Callable[[SparseWriter], None] | None:
    """The writer's after-chunk hook, or None when this attempt records nothing more.
    `layers` are the readers from the wire up (`OpenedImage.layers`): [replay] for raw,
    [replay, decompressor, replay] for a compressed raw image."""
    if checkpoints is None or not checkpoints.checkpointer.active or len(layers) not in (1, 3):
        return None
    checkpointer = checkpoints.checkpointer
    wire = layers[0]
    decoder, decoded = (layers[1], layers[2]) if len(layers) == 3 else (None, None)
    assert isinstance(wire, PrefixReader)

    def hook(writer: SparseWriter) -> None:
        if not checkpointer.due(meter.count):
            return
        if isinstance(decoded, PrefixReader) and decoded.pending:
            return
        restart = decoder.boundary() if isinstance(decoder, DecompressingReader) else b""
        if restart is None:
            return
        carry = restart + wire.pending
        if decoder is None and meter.count - len(carry) != writer.offset:
            return  # raw: the target offset is the source offset, or this is not a consistent point
        started = checkpointer.now()
        target_offset = writer.sync()
        state = decoder.state() if isinstance(decoder, DecompressingReader) else b""
        checkpointer.save(meter.count, target_offset, carry, meter.hash_state(), started, state)

    return hook
