"""The streaming converter's checkpoints when its qcow2 image arrives inside gzip, xz or zstd: the hook
`importer.transfer` hands the converter for a compressed qcow2, fresh or resumed.

When a record falls due, the hook first asks the decompressor for a restart point
(`DecompressingReader.boundary`; when it is inside a gzip DEFLATE block, the next read stops at the
block's end, and the converter reports that short read through `inside`): the wire offset, the bytes
read past it, the checksum's state, the decompressor's state and the decoded offset there
(`importer.compressedqcow2.DecoderPoint`). At the next host cluster boundary where the converter does
not hold back too much, it keeps the image ranges the restart reads again beside the record
(`importer.checkpointranges`: the decoded image cannot be read by range), syncs the disk and saves
the record: the point's offsets and the converter's state (`CompressedRestart`). A point further than
`POINT_REACH` decoded bytes behind the converter (it held data back for a while) is replaced by a
newer one as soon as the decompressor reaches one, so a restart decodes about that much again at
most (plus a block) and drops it. The rest (Block volumes'
records at the device's end, the log when no record could be taken for long) is the plain qcow2
hook's, `importer.checkpointing.Qcow2Checkpoints`.
"""

from __future__ import annotations

from collections.abc import Sequence

from importer.checkpoint import Checkpointer
from importer.checkpointing import CheckpointPlan, Meter, Qcow2Checkpoints
from importer.checkpointranges import RangeStore
from importer.compressedqcow2 import CompressedRestart, DecoderPoint, restart_record
from importer.formats import DecompressingReader, PrefixReader
from importer.qcow2stream import Qcow2Stream
from importer.qcow2stream.restart import RestartRecord

POINT_REACH = 1 << 20  # decoded bytes a decoder point may lie behind the converter's record
TINY_READ = 16  # a read this short right after a probe that found no restart point is not probed


class CompressedQcow2Checkpoints(Qcow2Checkpoints):
    """`importer.qcow2stream.ClusterHook` for a qcow2 inside one layer of compression."""

    def __init__(self, checkpointer: Checkpointer, meter: Meter, wire: PrefixReader, decoder: DecompressingReader,
                 decoded: PrefixReader, ranges: RangeStore) -> None:
        super().__init__(checkpointer, meter, wire)
        self._ranges = ranges
        self._decoder = decoder
        self._decoded = decoded
        self._point: DecoderPoint | None = None
        self._next_probe = 0  # decoded offset before which a tiny read is not probed (see `_take_point`)

    def __call__(self, stream: Qcow2Stream) -> None:
        self._step(stream, ())

    def inside(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None:
        self._step(stream, tail)

    def _step(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None:
        if not self._checkpointer.due(self._meter.count):
            return
        at = stream.position + sum(map(len, tail))
        point = self._point
        crawl = bool(tail) and len(tail[-1]) <= TINY_READ and at < self._next_probe
        if (point is None or at - point.decoded > POINT_REACH) and not crawl:
            self._point = point = self._take_point(at) or point  # an older point stays usable meanwhile
        if point is None or tail:
            return
        self._record(stream, point)

    def _take_point(self, at: int) -> DecoderPoint | None:
        """A decoder restart point here, at decoded offset `at`; or None (the next read stops at one)."""
        if self._decoded.pending:
            return None
        unconsumed = self._decoder.boundary()
        if unconsumed is None:
            # Finding out may have read ahead (a zstd frame's next byte, which the next read hands out
            # alone): a probe after each such tiny read would crawl on a byte at a time, so a tiny read
            # right after this probe is not probed (a gzip decoder stays armed for its next block end).
            self._next_probe = at + TINY_READ + 1
            return None
        meter = self._meter
        return DecoderPoint(meter.count, unconsumed + self._wire.pending, meter.hash_state(), self._decoder.state(),
                            at)

    def _record(self, stream: Qcow2Stream, point: DecoderPoint) -> None:
        checkpointer = self._checkpointer
        if why := stream.held_back():
            self._explain(why)
            checkpointer.skip(self._meter.count)
            return
        started = checkpointer.now()
        qcow2 = stream.restart_state()
        high_water = stream.sync()
        assert self._ranges is not None
        if why := self._ranges.keep(RestartRecord.decode(qcow2).ranges, stream.restart_pieces()):
            self._explain(why, at_once=True)
            checkpointer.skip(self._meter.count)
            return
        state = CompressedRestart(point.decoder, point.decoded, stream.position, qcow2).encode()
        checkpointer.source_state = b""
        checkpointer.save(point.wire, high_water, point.carry, point.hash_state, started, state)
        self._point = None


def compressed_qcow2_checkpoints(checkpoints: CheckpointPlan | None, meter: Meter,
                                 layers: tuple[PrefixReader | DecompressingReader, ...]
                                 ) -> CompressedQcow2Checkpoints | None:
    """The converter's hook for a qcow2 inside one layer of compression ([replay, decompressor, replay]),
    or None when this attempt records nothing more (or the image's ranges have nowhere to be kept)."""
    if checkpoints is None or not checkpoints.checkpointer.active or len(layers) != 3:
        return None
    checkpointer = checkpoints.checkpointer
    ranges = checkpointer.ranges or checkpointer.decoded_ranges
    wire, decoder, decoded = layers
    if ranges is None:
        return None
    assert isinstance(wire, PrefixReader) and isinstance(decoder, DecompressingReader)
    assert isinstance(decoded, PrefixReader)
    if checkpoints.resume is not None:
        ranges.resume(restart_record(checkpoints.resume).ranges)
    else:
        ranges.reset()
    return CompressedQcow2Checkpoints(checkpointer, meter, wire, decoder, decoded, ranges)
