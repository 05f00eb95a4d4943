"""The layer walk over in-memory blobs (no network): the disk's bytes reach the sink, every blob is
verified, damage shows up as a checksum mismatch, and unknown layer types are skipped."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from importer.errors import ChecksumMismatch, InvalidImage
from importer.sources.registry.blobs import VerifyingReader, verify_bytes
from importer.sources.registry.layers import DiskEntry, LayerWalk
from importer.sources.registry.manifest import Descriptor
from tests.registry import images as oci


class Blob(io.BytesIO):
    def __init__(self, data: bytes, start: int) -> None:
        super().__init__(data[start:])
        self.start = start


class Opener:
    """Blobs from memory; `ranges`: whether a request from an offset is answered from there."""

    def __init__(self, blobs: dict[str, bytes], *, ranges: bool = True) -> None:
        self.blobs = blobs
        self.ranges = ranges
        self.opened: list[str] = []
        self.starts: list[int] = []

    @contextmanager
    def open(self, descriptor: Descriptor, start: int = 0) -> Iterator[Blob]:
        self.opened.append(descriptor.digest)
        self.starts.append(start if self.ranges else 0)
        yield Blob(self.blobs[descriptor.digest], start if self.ranges else 0)


class Sink:
    def __init__(self) -> None:
        self.entry: DiskEntry | None = None
        self.data = bytearray()
        self.start = 0
        self.why: str | None = None

    def begin(self, entry: DiskEntry, start: int, why: str | None) -> None:
        self.entry, self.start, self.why = entry, start, why

    def write(self, data: bytes) -> None:
        self.data += data


def walk(layers: list[oci.Blob], *, stored: dict[str, bytes] | None = None) -> tuple[Sink, Opener]:
    descriptors = tuple(Descriptor(b.media_type, b.digest, b.size) for b in layers)
    opener = Opener(stored or {b.digest: b.data for b in layers})
    sink = Sink()
    LayerWalk(descriptors, opener, sink, "img").run()
    return sink, opener


DISK = bytes(range(256)) * 4096


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_disk_bytes_reach_the_sink(compression: str | None) -> None:
    sink, _ = walk([oci.layer({"disk/disk.img": DISK}, compression=compression)])
    assert sink.entry is not None and (sink.entry.name, sink.entry.size) == ("disk/disk.img", len(DISK))
    assert bytes(sink.data) == DISK


def test_layers_are_read_top_first_and_all_of_them() -> None:
    base = oci.layer({"etc/a": b"a"}, directories=("etc/",))
    top = oci.layer({"disk/disk.img": DISK})
    _, opener = walk([base, top])
    assert opener.opened == [top.digest, base.digest]


def test_two_disks_in_different_layers() -> None:
    with pytest.raises(InvalidImage, match=r"more than one file: /disk/b\.img .*layer 2/2.* and /disk/a\.img .*layer 1/2"):
        walk([oci.layer({"disk/a.img": DISK}), oci.layer({"disk/b.img": DISK})])


def test_unknown_layer_types_are_skipped() -> None:
    artifact = oci.Blob("application/vnd.example.signature", b"not a tar")
    sink, opener = walk([oci.layer({"disk/disk.img": DISK}), artifact])
    assert artifact.digest not in opener.opened and bytes(sink.data) == DISK


def test_an_empty_layer_is_fine() -> None:
    sink, _ = walk([oci.Blob("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(b"")),
                    oci.layer({"disk/disk.img": DISK})])
    assert bytes(sink.data) == DISK


def test_damage_that_breaks_decompression_is_reported_as_the_checksum_mismatch() -> None:
    good = oci.layer({"disk/disk.img": DISK})
    damaged = bytearray(good.data)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(ChecksumMismatch, match=f"expected {good.digest}, calculated sha256:"):
        walk([good], stored={good.digest: bytes(damaged)})


def test_a_blob_longer_than_its_descriptor_is_cut_off() -> None:
    reader = VerifyingReader(io.BytesIO(b"x" * 10), "sha256:" + "0" * 64, 4, "blob")
    with pytest.raises(ChecksumMismatch, match="larger than the 4 bytes its manifest gives"):
        reader.read(10)


def test_verify_bytes() -> None:
    blob = oci.Blob("x", b"hello")
    verify_bytes(blob.data, blob.digest, "doc", size=5)
    with pytest.raises(ChecksumMismatch, match="expected 6 bytes, got 5"):
        verify_bytes(blob.data, blob.digest, "doc", size=6)
    with pytest.raises(ChecksumMismatch, match=f"checksum mismatch for doc: expected {blob.digest}"):
        verify_bytes(b"hellO", blob.digest, "doc")
