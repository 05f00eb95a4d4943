"""What a checkpoint of a qcow2 image inside gzip, xz or zstd (qcow2.gz, qcow2.xz, qcow2.zst) keeps,
and how a restart reads it back.

Two restart points have to line up: the decompressor restarts only at a gzip DEFLATE block boundary,
an xz block or a zstd frame end (`DecompressingReader.boundary`), the streaming converter only at a
host cluster boundary of the decoded image, where it does not hold back too much
(`importer.qcow2stream`). So a record pairs the newest decoder point at or before the converter's
record (`DecoderPoint`, taken by `importer.compressedcheckpoints` when a record falls due) with the
converter's state there: the record's `wire_offset`, `carry` and `hash_state` are the decoder point's
(the compressed bytes a restart fetches with a Range request, and the checksum over them), and its
`decoder_state` is a `CompressedRestart`: the decompressor's state at that point, the decoded offset
there, the converter's position (a few bytes to a few clusters further on; a restart decodes them
again and skips them, `SkippingReader`) and the converter's `RestartRecord`. The image's tables a
restart reads again cannot be range-read from the decoded stream, so they are kept beside the record,
as for uploads and registry layers (`importer.checkpointranges`).

`converter_view` turns such a record into the one the converter's restart understands (position and
ranges of the decoded image), for `importer.checkpointrestart.rebuild`; `importer.resume` checks the
decoder part (`decoder_problem`); `importer.transfer.resume_transfer` builds the readers.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from importer.checkpoint import Checkpoint
from importer.gzipblocks import restart_problem
from importer.qcow2stream.restart import RestartMismatch, RestartRecord
from importer.reader import Reader

_HEAD = struct.Struct(">4sQQII")  # magic, decoded offset of the point, converter position, two lengths
_MAGIC = b"CQ2R"


@dataclass(frozen=True)
class DecoderPoint:
    """Where the decompressor can restart: wire bytes consumed (and hashed) there, the bytes read past it
    (replayed on restart), the checksum's state, the decompressor's state and the decoded offset."""

    wire: int
    carry: bytes
    hash_state: bytes | None
    decoder: bytes
    decoded: int


@dataclass(frozen=True)
class CompressedRestart:
    """A compressed qcow2 record's `decoder_state`."""

    decoder: bytes  # `DecompressingReader.state()` at the decoder point
    decoded: int  # decoded (qcow2 image) offset of the decoder point
    position: int  # the converter's position (a host cluster boundary at or after `decoded`)
    qcow2: bytes  # the converter's `RestartRecord`, encoded

    @property
    def skip(self) -> int:
        """Decoded bytes a restart decodes again and drops before the converter continues."""
        return self.position - self.decoded

    def encode(self) -> bytes:
        body = _HEAD.pack(_MAGIC, self.decoded, self.position, len(self.decoder), len(self.qcow2)) \
            + self.decoder + self.qcow2
        return body + zlib.crc32(body).to_bytes(4, "big")

    @classmethod
    def decode(cls, state: bytes) -> CompressedRestart:
        """Raises `RestartMismatch` (the sentence a user sees when the import starts over)."""
        body = state[:-4]
        if len(state) < _HEAD.size + 4 or zlib.crc32(body).to_bytes(4, "big") != state[-4:]:
            raise RestartMismatch("the checkpoint's compressed qcow2 state is corrupt (its check does not match)")
        magic, decoded, position, decoder_length, qcow2_length = _HEAD.unpack_from(body)
        if magic != _MAGIC or _HEAD.size + decoder_length + qcow2_length != len(body) or decoded > position:
            raise RestartMismatch("the checkpoint's compressed qcow2 state is corrupt (its fields do not fit)")
        decoder = body[_HEAD.size:_HEAD.size + decoder_length]
        return cls(decoder, decoded, position, body[_HEAD.size + decoder_length:])


def converter_view(record: Checkpoint) -> Checkpoint:
    """`record` as the converter's restart reads it: a qcow2 record whose wire offset (less its carry) is
    the converter's position and whose `decoder_state` is the `RestartRecord` (a record of a qcow2 that is
    not compressed is that already). Raises `RestartMismatch`."""
    if record.format != "qcow2" or record.compression is None:
        return record
    state = CompressedRestart.decode(record.decoder_state)
    return replace(record, wire_offset=state.position, carry=b"", decoder_state=state.qcow2, compression=None)


def restart_record(record: Checkpoint) -> RestartRecord:
    """The converter's part of a qcow2 record (compressed or not). Raises `RestartMismatch`."""
    return RestartRecord.decode(converter_view(record).decoder_state)


def decoder_problem(record: Checkpoint) -> str | None:
    """Why a compressed qcow2 record's decoder part cannot be continued here (None: it can)."""
    try:
        state = CompressedRestart.decode(record.decoder_state)
    except RestartMismatch as e:
        return e.reason
    if record.compression == "gz":
        return restart_problem(state.decoder, state.decoded)
    return None


class SkippingReader:
    """The decoded stream from the decoder point on, without its first `skip` bytes (the converter had
    them before the checkpoint)."""

    def __init__(self, inner: Reader, skip: int) -> None:
        self._inner = inner
        self._skip = skip

    def read(self, size: int = -1, /) -> bytes:
        while self._skip:
            dropped = self._inner.read(min(self._skip, 1 << 20))
            if not dropped:
                return b""
            self._skip -= len(dropped)
        return self._inner.read(size)
