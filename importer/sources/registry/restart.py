"""Restart points inside a registry layer: where a killed importer's registry import can continue.

The pipeline's checkpoint record (`importer.checkpoint`) says how far the disk file's byte stream was
consumed (`wire_offset`). A registry source cannot ask for "the disk file from byte N": the file lies
inside a tar stream inside a (usually single-member gzip) layer blob. So while the layer walk streams
the disk, `PointTap` (between the layer's decompressor and the tar parser) takes a `RestartPoint`
every `spacing` bytes of disk data, at a DEFLATE block boundary (`importer.gzipblocks`; any offset in
a plain tar layer): the blob offset, the sha256 state of the blob up to it (`importer.hashstate`, so
the layer digest is still verified end to end), the gzip state, the tar offset there, where the disk
file's data starts, and the layer's overlay marks before the disk (whiteouts of lower layers).
`RestartPoints` keeps the last few; the checkpoint writer (`importer.checkpointing`) stores the newest
one at or before its record's offset in `Checkpoint.source_state`, and a restarted importer hands it
back to `RegistrySource.open_from`, whose walk (`layers.LayerWalk`) fetches the blob from there with
a Range request. `decode` refuses a point that is corrupt or cannot be continued here, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections import deque
from dataclasses import asdict, dataclass, field

from importer import hashstate
from importer.formats import Compression, DecompressingReader
from importer.gzipblocks import restart_problem
from importer.reader import Reader
from importer.sources.registry.blobs import VerifyingReader

KEEP = 64  # points kept: the walk runs ahead of the pipeline by the queue and its buffers
MAX_POINT = 128 << 10  # a point is ~33 KiB with a gzip window; a record slot on a Block volume is 512 KiB
_HEAD = struct.Struct("<4sII")  # magic, JSON length, decoder state length
_MAGIC = b"RRP1"


class PointRefused(ValueError):
    """A saved restart point that cannot be continued (corrupt, another libcrypto, another layer)."""


@dataclass(frozen=True)
class RestartPoint:
    layer: int  # index of the disk's layer in the manifest
    digest: str  # that layer blob's digest
    compression: str | None  # "gz", or None for a plain tar layer
    blob_offset: int  # compressed bytes consumed (and hashed) at this point
    tar_offset: int  # decompressed (tar stream) offset of this point
    data_start: int  # tar offset of the disk file's first byte
    size: int  # the disk file's size
    name: str  # the disk file's path ("disk/disk.img")
    marks: dict[str, list[str]]  # the layer's overlay marks before this point (`OverlayView.layer_marks`)
    hash_library: str
    blob_hash: bytes = field(repr=False)
    decoder_state: bytes = field(repr=False)

    @property
    def disk_offset(self) -> int:
        """The offset in the disk file's byte stream (the pipeline's wire offset) of this point."""
        return self.tar_offset - self.data_start

    def encode(self) -> bytes:
        doc = asdict(self)
        del doc["blob_hash"], doc["decoder_state"]
        doc["blob_hash"] = self.blob_hash.hex()
        head = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        body = _HEAD.pack(_MAGIC, len(head), len(self.decoder_state)) + head + self.decoder_state
        return body + hashlib.sha256(body).digest()


def decode(state: bytes) -> RestartPoint:
    """The point `state` holds, checked as far as it can be before anything is fetched."""
    if not state:
        raise PointRefused("the checkpoint holds no restart point inside the registry layer")
    body, check = state[:-32], state[-32:]
    if len(state) < _HEAD.size + 32 or hashlib.sha256(body).digest() != check:
        raise PointRefused("the checkpoint's registry restart point is corrupt (its check does not match)")
    magic, head_length, state_length = _HEAD.unpack_from(body)
    if magic != _MAGIC or _HEAD.size + head_length + state_length != len(body):
        raise PointRefused("the checkpoint's registry restart point is corrupt (its fields do not fit)")
    try:
        doc = json.loads(body[_HEAD.size:_HEAD.size + head_length])
        doc["blob_hash"] = bytes.fromhex(doc["blob_hash"])
        point = RestartPoint(**doc, decoder_state=body[_HEAD.size + head_length:])
    except (ValueError, TypeError, KeyError) as e:
        raise PointRefused(f"the checkpoint's registry restart point is unreadable ({e})") from e
    _check(point)
    return point


def _check(point: RestartPoint) -> None:
    if point.compression not in (None, Compression.GZIP.value):
        raise PointRefused(f"the checkpoint's registry restart point is in a {point.compression} layer")
    if not 0 <= point.data_start <= point.tar_offset <= point.data_start + point.size or point.blob_offset < 0:
        raise PointRefused("the checkpoint's registry restart point has offsets that do not fit together")
    if point.hash_library != hashstate.library_version():
        raise PointRefused(f"the layer's hash state was saved by {point.hash_library or 'no library'} and this "
                           f"importer has {hashstate.library_version() or 'none that can continue it'}")
    try:
        hashstate.ResumableHash.restore("sha256", point.blob_hash, point.hash_library)
    except hashstate.StateMismatch as e:
        raise PointRefused(f"the layer's hash state cannot be continued ({e})") from e
    if point.compression is not None and (why := restart_problem(point.decoder_state, point.tar_offset)):
        raise PointRefused(f"{why} (the registry layer's gzip state)")


class RestartPoints:
    """The last points the walk took (its worker thread offers them, the transfer thread takes them).
    `unavailable`: why this stream has none (the first record says so, and a restart starts over)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._points: deque[tuple[int, bytes]] = deque(maxlen=KEEP)
        self.unavailable: str | None = None

    def offer(self, point: RestartPoint) -> None:
        encoded = point.encode()
        if len(encoded) <= MAX_POINT:
            with self._lock:
                self._points.append((point.disk_offset, encoded))

    def at_or_before(self, offset: int) -> bytes | None:
        """The newest point at or before disk offset `offset`, forgetting older ones (records only move on)."""
        with self._lock:
            while len(self._points) > 1 and self._points[1][0] <= offset:
                self._points.popleft()
            if self._points and self._points[0][0] <= offset:
                return self._points[0][1]
            return None


@dataclass
class DiskPlace:
    """Where the disk file lies in its layer, for the points the tap takes."""

    layer: int
    digest: str
    data_start: int
    size: int
    name: str
    marks: dict[str, list[str]]


class PointTap:
    """The layer's decompressed (tar) stream, counted, taking a restart point every `spacing` bytes of
    disk data once `disk` is set: at the decoder's next block boundary (`boundary()` arms it), where the
    blob's hash state is known (`VerifyingReader.state_at`)."""

    def __init__(self, stream: Reader, blob: VerifyingReader, decoder: DecompressingReader | None,
                 points: RestartPoints | None, spacing: int, *, offset: int = 0) -> None:
        self._stream = stream
        self._blob = blob
        self._decoder = decoder
        self._points = points
        self._spacing = spacing
        self.offset = offset
        self.disk: DiskPlace | None = None
        self.unrestartable: str | None = None  # why this layer offers no points (set by the walk)
        self._next = 0  # disk offset of the next point wanted

    def place(self, disk: DiskPlace, next_at: int = 0) -> None:
        self.disk, self._next = disk, next_at

    def read(self, size: int = -1, /) -> bytes:
        if self._due():
            self._take()
        data = self._stream.read(size)
        self.offset += len(data)
        return data

    def _due(self) -> bool:
        disk = self.disk
        if disk is None or self._points is None:
            return False
        inside = self.offset - disk.data_start
        return self._next <= inside <= disk.size

    def _take(self) -> None:
        disk, points = self.disk, self._points
        assert disk is not None and points is not None
        unconsumed = self._decoder.boundary() if self._decoder is not None else b""
        if unconsumed is None:
            return  # armed: the next read stops at the end of the current DEFLATE block
        blob_offset = self._blob.count - len(unconsumed)
        if self._decoder is None and blob_offset != self.offset:
            return  # a plain layer's offsets are the same once the replayed head has been read
        blob_hash = self._blob.state_at(blob_offset)
        if blob_hash is None:
            return
        state = self._decoder.state() if self._decoder is not None else b""
        points.offer(RestartPoint(
            disk.layer, disk.digest, self._decoder.kind.value if self._decoder is not None else None, blob_offset,
            self.offset, disk.data_start, disk.size, disk.name, disk.marks, hashstate.library_version(),
            blob_hash, state))
        self._next = self.offset - disk.data_start + self._spacing
