"""The layer walk: find the disk under `/disk/` and stream its bytes while the layers download.

Runs in a worker thread (see `loopcalls`). Layers are read **top first** (see `overlay` for why and
for the rules); each blob is hashed as it arrives (`blobs.VerifyingReader`), un-gzipped, un-zstded or
un-xzed when its first bytes say so (whatever its media type claims, as upstream's format readers do),
and parsed as a tar stream. The first visible disk file is handed to the `DiskSink` chunk by chunk as
it is read; every other layer is still read to its end so that its digest is checked and the one-file
rule holds for the whole image. When a layer fails to decompress or parse, the rest of its blob is read
and its digest checked first: a damaged blob is reported as the checksum mismatch it is.

Layer media types we do not know as tar layers (artifacts, signatures) are skipped, as upstream skips
layers it cannot read. Called by `importer.sources.registry.source`.

Restarts (`restart`): while the disk streams from a gzip or plain tar layer, the layer's tar stream goes
through a `PointTap`, which offers a restart point every `spacing` bytes of disk data. A walk given one
(`Resume`) reads the layers above the disk's again in full (their digests and the one-file rule still
count), fetches the disk's layer from the point's blob offset (a Range request; `LayerOpener.open`
says where the answer starts), restores the blob's hash state, the gzip state and the layer's overlay
marks, skips to the record's offset, streams the rest of the disk, parses the rest of the tar and
reads the layers below. A registry that sends the whole blob instead gets the layer read from its
start, and the stream says why it started over.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from typing import Protocol

from importer.errors import ImagePullFailed, ImportFailure, InvalidImage
from importer.formats import Compression, DecompressingReader, PrefixReader, detect_compression, read_up_to
from importer.reader import Reader
from importer.sources.registry.blobs import VerifyingReader
from importer.sources.registry.image import LayerOpener
from importer.sources.registry.manifest import Descriptor
from importer.sources.registry.overlay import Kind, OverlayView, normalize
from importer.sources.registry.restart import DiskPlace, PointTap, RestartPoint, RestartPoints

log = logging.getLogger(__name__)
CHUNK = 1 << 20
TAR_BLOCK = 512
NO_DISK = "Failed to find VM disk image file in the container image"
LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


@dataclass(frozen=True)
class DiskEntry:
    name: str
    size: int
    layer: str


@dataclass(frozen=True)
class Resume:
    """Continue the disk at `offset` of its byte stream, from `point` (at or before it)."""

    point: RestartPoint
    offset: int


class DiskSink(Protocol):
    def begin(self, entry: DiskEntry, start: int, why: str | None) -> None:
        """The disk's bytes follow from `start`; `why`: the reason a walk asked to resume starts at 0."""
        ...

    def write(self, data: bytes) -> None: ...


def _kind(member: tarfile.TarInfo) -> Kind:
    if member.isdir():
        return Kind.DIRECTORY
    return Kind.FILE if member.isfile() else Kind.OTHER


def _skip(reader: Reader, count: int) -> None:
    while count > 0:
        piece = reader.read(min(count, CHUNK))
        if not piece:
            raise EOFError("the layer ended inside the disk file")
        count -= len(piece)


class LayerWalk:
    def __init__(self, layers: tuple[Descriptor, ...], opener: LayerOpener, sink: DiskSink, image: str, *,
                 points: RestartPoints | None = None, spacing: int = 8 << 20, resume: Resume | None = None) -> None:
        self._layers = layers
        self._opener = opener
        self._sink = sink
        self._image = image
        self._view = OverlayView()
        self._points = points
        self._spacing = spacing
        self._resume = resume
        self._why: str | None = None  # why a walk asked to resume read the disk's layer from its start
        self.disk: DiskEntry | None = None

    def run(self) -> DiskEntry:
        count = len(self._layers)
        for number in range(count, 0, -1):
            layer = self._layers[number - 1]
            blob_name = f"layer {number}/{count} of {self._image}"
            where = f"layer {number}/{count} ({layer.digest}) of {self._image}"
            if layer.media_type and layer.media_type not in LAYER_TYPES:
                log.warning("skipping %s: media type %s is not a filesystem layer", where, layer.media_type)
                continue
            point = self._resume.point if self._resume is not None and self._resume.point.layer == number - 1 else None
            with self._opener.open(layer, point.blob_offset if point is not None else 0) as raw:
                resumed = point is not None and raw.start == point.blob_offset
                if point is not None and raw.start not in (0, point.blob_offset):
                    raise ImagePullFailed(f"failed to pull image: {self._image}: the registry answered the request "
                                          f"for {blob_name} from byte {point.blob_offset} with another range")
                if point is not None and resumed:
                    blob = VerifyingReader.restored(raw, layer.digest, layer.size, blob_name, count=point.blob_offset,
                                                    state=point.blob_hash, library=point.hash_library)
                else:
                    if point is not None:
                        self._why = (f"the registry answered the request for {blob_name} from byte "
                                     f"{point.blob_offset} with the whole blob (it does not honour range requests)")
                    blob = VerifyingReader(raw, layer.digest, layer.size, blob_name)
                try:
                    self._read_layer(blob, number - 1, where, point if resumed else None)
                except ImportFailure:
                    blob.verify()  # a damaged blob is a checksum mismatch, whatever it broke downstream
                    raise
                blob.verify()
            self._view.end_layer()
        if self.disk is None:
            raise InvalidImage(f"{NO_DISK}: no file in /disk/ in any of the {count} layer(s) of {self._image}")
        return self.disk

    def _read_layer(self, blob: VerifyingReader, index: int, where: str, point: RestartPoint | None) -> None:
        try:
            if point is not None:
                self._continue(blob, index, where, point)
                return
            head = read_up_to(blob, 6)
            reader: Reader = PrefixReader(head, blob)
            kind = detect_compression(head)
            decoder = DecompressingReader(kind, reader) if kind is not None else None
            restartable = kind in (None, Compression.GZIP) and blob.resumable
            tap = PointTap(decoder or reader, blob, decoder, self._points if restartable else None, self._spacing)
            if not restartable and self._points is not None:
                tap.unrestartable = (
                    (f"the disk's layer is {kind.value}-compressed" if kind is not None else
                     "the disk's layer digest is not a sha256 whose state this importer can save")
                    + ", so the importer keeps no restart points inside it (gzip and plain tar layers have them)")
            head = read_up_to(tap, TAR_BLOCK)
            if not head:
                log.info("%s is empty", where)
                return
            self._members(PrefixReader(head, tap), tap, index, where)
        except (tarfile.TarError, EOFError) as e:
            raise InvalidImage(f"{where} is not a valid tar archive: {e}") from e

    def _members(self, stream: Reader, tap: PointTap, index: int, where: str) -> None:
        tar = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]
        while (member := tar.next()) is not None:
            del tar.members[:]  # stream mode keeps every header; a base OS layer has tens of thousands
            if self._view.classify(member.name, _kind(member), where):
                self._stream(tar, member, tap, index, where)

    def _stream(self, tar: tarfile.TarFile, member: tarfile.TarInfo, tap: PointTap, index: int, where: str) -> None:
        name = normalize(member.name)
        if self.disk is not None:
            both = (f"/{self.disk.name} and /{name} in {where}" if self.disk.layer == where else
                    f"/{self.disk.name} ({self.disk.layer}) and /{name} ({where})")
            raise InvalidImage(f"image directory contains more than one file: {both}; a container disk holds "
                               f"exactly one file in /disk/")
        self.disk = DiskEntry(name, member.size, where)
        log.info("found the disk /%s (%d bytes) in %s", name, member.size, where)
        if member.issparse():  # its stored bytes are only the data segments: tar offsets are not file offsets
            tap.unrestartable = ("the disk is a sparse tar entry (only its data segments are stored), so the importer "
                                 "keeps no restart points inside it")
        if self._points is not None and tap.unrestartable:
            self._points.unavailable = tap.unrestartable
        else:
            tap.place(DiskPlace(index, self._layers[index].digest, member.offset_data, member.size, name,
                                self._view.layer_marks()))
        self._sink.begin(self.disk, 0, self._why)
        data = tar.extractfile(member)
        if data is None:
            raise InvalidImage(f"cannot read /{name} in {where}")
        while chunk := data.read(CHUNK):
            self._sink.write(chunk)

    def _continue(self, blob: VerifyingReader, index: int, where: str, point: RestartPoint) -> None:
        """The disk's layer from a restart point: the rest of the disk from the resume offset, then the rest
        of the tar stream (a second disk file, or marks, after it still count)."""
        assert self._resume is not None
        decoder = (DecompressingReader(Compression(point.compression), blob, at_boundary=True,
                                       state=point.decoder_state) if point.compression is not None else None)
        tap = PointTap(decoder or blob, blob, decoder, self._points, self._spacing, offset=point.tar_offset)
        self._view.restore_layer(point.marks)
        self.disk = DiskEntry(point.name, point.size, where)
        tap.place(DiskPlace(index, self._layers[index].digest, point.data_start, point.size, point.name, point.marks),
                  next_at=point.disk_offset + self._spacing)
        offset = self._resume.offset
        _skip(tap, offset - point.disk_offset)
        log.info("resumed the disk /%s at byte %d in %s (blob byte %d)", point.name, offset, where, point.blob_offset)
        self._sink.begin(self.disk, offset, None)
        remaining = point.size - offset
        while remaining > 0:
            chunk = tap.read(min(CHUNK, remaining))
            if not chunk:
                raise EOFError("the layer ended inside the disk file")
            self._sink.write(chunk)
            remaining -= len(chunk)
        _skip(tap, -point.size % TAR_BLOCK)
        block = read_up_to(tap, TAR_BLOCK)
        if block.strip(b"\0"):
            self._members(PrefixReader(block, tap), tap, index, where)
