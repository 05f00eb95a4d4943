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
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from typing import Protocol

from importer.errors import ImportFailure, InvalidImage
from importer.formats import DecompressingReader, PrefixReader, detect_compression, read_up_to
from importer.reader import Reader
from importer.sources.registry.blobs import VerifyingReader
from importer.sources.registry.image import LayerOpener
from importer.sources.registry.manifest import Descriptor
from importer.sources.registry.overlay import Kind, OverlayView, normalize

log = logging.getLogger(__name__)
CHUNK = 1 << 20
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


class DiskSink(Protocol):
    def begin(self, entry: DiskEntry) -> None: ...
    def write(self, data: bytes) -> None: ...


def _kind(member: tarfile.TarInfo) -> Kind:
    if member.isdir():
        return Kind.DIRECTORY
    return Kind.FILE if member.isfile() else Kind.OTHER


def _decompressed(blob: Reader) -> Reader:
    head = read_up_to(blob, 6)
    reader: Reader = PrefixReader(head, blob)
    kind = detect_compression(head)
    return DecompressingReader(kind, reader) if kind is not None else reader


class LayerWalk:
    def __init__(self, layers: tuple[Descriptor, ...], opener: LayerOpener, sink: DiskSink, image: str) -> None:
        self._layers = layers
        self._opener = opener
        self._sink = sink
        self._image = image
        self._view = OverlayView()
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
            with self._opener.open(layer) as raw:
                blob = VerifyingReader(raw, layer.digest, layer.size, blob_name)
                try:
                    self._read_layer(blob, where)
                except ImportFailure:
                    blob.verify()  # a damaged blob is a checksum mismatch, whatever it broke downstream
                    raise
                blob.verify()
            self._view.end_layer()
        if self.disk is None:
            raise InvalidImage(f"{NO_DISK}: no file in /disk/ in any of the {count} layer(s) of {self._image}")
        return self.disk

    def _read_layer(self, blob: VerifyingReader, where: str) -> None:
        try:
            stream = _decompressed(blob)
            head = read_up_to(stream, 512)
            if not head:
                log.info("%s is empty", where)
                return
            tar = tarfile.open(fileobj=PrefixReader(head, stream), mode="r|")  # type: ignore[call-overload]
            while (member := tar.next()) is not None:
                del tar.members[:]  # stream mode keeps every header; a base OS layer has tens of thousands
                if self._view.classify(member.name, _kind(member), where):
                    self._stream(tar, member, where)
        except (tarfile.TarError, EOFError) as e:
            raise InvalidImage(f"{where} is not a valid tar archive: {e}") from e

    def _stream(self, tar: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> None:
        name = normalize(member.name)
        if self.disk is not None:
            both = (f"/{self.disk.name} and /{name} in {where}" if self.disk.layer == where else
                    f"/{self.disk.name} ({self.disk.layer}) and /{name} ({where})")
            raise InvalidImage(f"image directory contains more than one file: {both}; a container disk holds "
                               f"exactly one file in /disk/")
        self.disk = DiskEntry(name, member.size, where)
        log.info("found the disk /%s (%d bytes) in %s", name, member.size, where)
        self._sink.begin(self.disk)
        data = tar.extractfile(member)
        if data is None:
            raise InvalidImage(f"cannot read /{name} in {where}")
        while chunk := data.read(CHUNK):
            self._sink.write(chunk)
