"""The transfer thread's half of checkpoints: the first record of an attempt (what it imports, or why
a restart cannot continue it), and the hook the writer calls after each chunk, which, when a record
is due and the decoder can restart here, syncs the target and saves the offsets, the bytes read past
the restart point and the checksum's state. Raw images restart at any consistent chunk; compressed
raw images at the end of a gzip DEFLATE block (a member's end is one too; `importer.gzipblocks`: the
record's decoder state then holds the last 32 KiB of output and the bit position), xz block or zstd
frame (`DecompressingReader.boundary`, which, when there is none right here, makes the next read stop
at the next gzip block end); qcow2 images at a host cluster boundary, unless the streaming converter
holds back more data than a restart would read again (`Qcow2Checkpoints`; the record names the metadata
and held-back clusters a restart reads again, `importer.qcow2stream.restart`); a compressed qcow2
(qcow2.gz, .xz, .zst) pairs a decompressor restart point with the converter's next record and keeps
the image's ranges beside it (`importer.compressedcheckpoints`, `Checkpointer.decoded_ranges`). A qcow2
upload, whose
client cannot be asked for those bytes again, keeps them beside the record first (`Checkpointer.ranges`,
`importer.checkpointranges`) and takes its record where the chunk ended, inside a cluster if need be
(the bytes read of that cluster go in the carry). A source that keeps its own restart points (a
registry layer, `CheckpointPlan.source_points`) gives each record the newest one at or before its
offset; where it has none yet, no record is taken. Such a source cannot serve a qcow2 restart's ranges
either, so its qcow2 imports keep them beside the record as uploads do (`importer.main.kept_ranges`).

`importer.transfer` calls these for a fresh attempt and continues a record in `resume_transfer`;
records and their stores are `importer.checkpoint`, the decision to resume is `importer.resume`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from importer import hashstate
from importer.checkpoint import Checkpoint, Checkpointer, SourceIdentity
from importer.checksum import ChecksumSpec, Hasher
from importer.formats import DecompressingReader, OpenedImage, PrefixReader
from importer.qcow2stream import DiskOutput, Qcow2Stream
from importer.qcow2stream.restart import Restart, RestartRecord
from importer.resume import not_resumable_reason
from importer.sources.base import SourcePoints
from importer.writer import SparseWriter

log = logging.getLogger(__name__)
HELD_BACK_LOG = 4  # intervals without a record, because the converter holds data back, before the log says so


@dataclass(frozen=True)
class CheckpointPlan:
    """What a checkpointed import needs to know beyond the bytes: where records go and what the source
    is; `resume` is the record this attempt continues (None: from the start)."""

    checkpointer: Checkpointer
    identity: SourceIdentity | None
    source_resumable: bool
    resume: Checkpoint | None = None
    restart: Restart | None = None  # a qcow2 record's converter state, rebuilt from the image's metadata
    source_points: SourcePoints | None = None  # the source's own restart points (registry layers)


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
    points = checkpoints.source_points
    why = (points.unavailable if points is not None else None) or not_resumable_reason(
        image.format.value, tuple(c.value for c in image.compression), archive, checkpoints.identity,
        checkpoints.source_resumable, ranges_kept=_ranges_kept(checkpoints.checkpointer, image),
        ranged_reads=points is None)
    if why is None and checksum is not None and meter.hash_state() is None:
        why = f"the state of a {checksum.algorithm} checksum cannot be saved by this importer"
    checkpoints.checkpointer.begin(Checkpoint(
        checkpoints.identity or SourceIdentity(""), image.format.value,
        image.compression[0].value if image.compression else None, checksum=checksum.text if checksum else "",
        hash_library=hashstate.library_version(), not_resumable=why))


def _ranges_kept(checkpointer: Checkpointer, image: OpenedImage) -> bool:
    """Whether a qcow2 restart's ranges have a place beside the record (a compressed one's too)."""
    return checkpointer.ranges is not None or (bool(image.compression) and checkpointer.decoded_ranges is not None)


def writer_hook(checkpoints: CheckpointPlan | None, meter: Meter,
                layers: tuple[PrefixReader | DecompressingReader, ...]) -> Callable[[SparseWriter], None] | None:
    """The writer's after-chunk hook, or None when this attempt records nothing more.
    `layers` are the readers from the wire up (`OpenedImage.layers`): [replay] for raw,
    [replay, decompressor, replay] for a compressed raw image."""
    if checkpoints is None or not checkpoints.checkpointer.active or len(layers) not in (1, 3):
        return None
    checkpointer = checkpoints.checkpointer
    points = checkpoints.source_points
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
        source_state = points.at_or_before(meter.count) if points is not None else b""
        if source_state is None:
            return  # the source has no restart point this far yet
        started = checkpointer.now()
        target_offset = writer.sync()
        state = decoder.state() if isinstance(decoder, DecompressingReader) else b""
        checkpointer.source_state = source_state
        checkpointer.save(meter.count, target_offset, carry, meter.hash_state(), started, state)

    return hook


class Qcow2Checkpoints:
    """The streaming qcow2 converter's checkpoints (`importer.qcow2stream.ClusterHook`): after a host
    cluster, when a record is due and the converter does not hold back too much (`held_back`), sync the
    disk and record the host offset, the guest high-water mark and where the bytes lie that a restart
    reads again (or log, once per stretch, why no record could be taken for a long while). On a Block
    volume the records live in the device's last MiB, which guest data may reach at any time (the
    converter writes in host order): before the first write there, the records are cleared and stop.

    With a range store (`Checkpointer.ranges`, a qcow2 upload: its client cannot be asked for ranges
    again), the table clusters are kept as they pass and the record's ranges made durable before the
    record; and a record may also be taken inside a cluster (a chunk rarely ends at a cluster
    boundary), at the wire offset reached, with the bytes read of that cluster in its carry."""

    def __init__(self, checkpointer: Checkpointer, meter: Meter, wire: PrefixReader,
                 points: SourcePoints | None = None) -> None:
        self._checkpointer = checkpointer
        self._meter = meter
        self._wire = wire
        self._points = points
        self._told = -1  # the record offset the log last explained a missing checkpoint after
        self._ranges = checkpointer.ranges
        self._watching = False

    def attach(self, output: DiskOutput) -> None:
        if (limit := self._checkpointer.store.data_limit) is not None:
            output.guard(limit, self._retire)

    def _retire(self) -> None:
        log.info("no more checkpoints: the records' place at the device's end is part of the disk, which is about "
                 "to be written there or finished")
        self._checkpointer.retire()

    def passed(self, stream: Qcow2Stream, start: int, data: bytes | memoryview) -> None:
        if self._ranges is None or not self._checkpointer.active:
            return
        if not self._watching:
            self._ranges.watch(stream.layout, stream.tables)
            self._watching = True
        self._ranges.passed(start, data)

    def __call__(self, stream: Qcow2Stream) -> None:
        self._take(stream, ())

    def inside(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None:
        if self._ranges is not None:
            self._take(stream, tail)

    def _take(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None:
        checkpointer, meter = self._checkpointer, self._meter
        if not checkpointer.due(meter.count):
            return
        if why := stream.held_back():
            self._explain(why)
            checkpointer.skip(meter.count)
            return
        carry = b"".join(tail) + self._wire.pending
        if meter.count - len(carry) != stream.position:
            return
        source_state = self._points.at_or_before(meter.count) if self._points is not None else b""
        if source_state is None:
            return  # the source has no restart point this far yet
        checkpointer.source_state = source_state
        started = checkpointer.now()
        state = stream.restart_state()
        if self._ranges is not None:
            needed = RestartRecord.decode(state).ranges
            high_water = stream.sync()
            if why := self._ranges.keep(needed, stream.restart_pieces()):
                self._explain(why, at_once=True)
                checkpointer.skip(meter.count)
                return
        else:
            high_water = stream.sync()
        checkpointer.save(meter.count, high_water, carry, meter.hash_state(), started, state)

    def _explain(self, why: str, *, at_once: bool = False) -> None:
        checkpointer = self._checkpointer
        if checkpointer.last_wire != self._told and (at_once or checkpointer.since_last(self._meter.count) >=
                                                     HELD_BACK_LOG * checkpointer.every_bytes):
            self._told = checkpointer.last_wire
            log.info("no checkpoint since source byte %d: %s", checkpointer.last_wire, why)


def no_record_before(checkpoints: CheckpointPlan | None, offset: int | None) -> None:
    """Tell the checkpointer that no qcow2 record can be taken before wire offset `offset` (the image's
    first clusters, which the converter reads before it starts) or, with None, any more (the converter
    is done; what follows is only drained): an upload's chunk ending there is not held for one."""
    if checkpoints is not None:
        checkpoints.checkpointer.skip(offset if offset is not None else 1 << 62)


def qcow2_checkpoints(checkpoints: CheckpointPlan | None, meter: Meter,
                      layers: tuple[PrefixReader | DecompressingReader, ...]) -> Qcow2Checkpoints | None:
    """The converter's hook, or None when this attempt records nothing more (a compressed qcow2 has its
    own: `importer.compressedcheckpoints`)."""
    if checkpoints is None or not checkpoints.checkpointer.active or len(layers) != 1:
        return None
    wire = layers[0]
    assert isinstance(wire, PrefixReader)
    ranges = checkpoints.checkpointer.ranges
    if ranges is not None and checkpoints.resume is not None:
        ranges.resume(RestartRecord.decode(checkpoints.resume.decoder_state).ranges)
    elif ranges is not None:
        ranges.reset()
    return Qcow2Checkpoints(checkpoints.checkpointer, meter, wire, checkpoints.source_points)
