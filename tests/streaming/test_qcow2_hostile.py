"""Broken or malicious tables are refused with the reason qemu-img check would give, never half-converted
or allowed to make the reader allocate without bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.errors import InvalidImage
from tests.streaming.qcow2_builders import (
    MiB,
    convert_with_stream,
    l1_entries,
    poke_l2_entry,
    qemu_img,
    qemu_io,
    read_l2_entry,
)

L2_OFFSET_MASK = 0x00FFFFFFFFFFFE00


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", path, str(8 * MiB))
    qemu_io(path, "write -P 1 0 256k", "write -P 2 4M 128k")
    return path


def _refused(image: Path, tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidImage, match=text) as info:
        convert_with_stream(image, tmp_path / "out.raw")
    assert info.value.message.startswith("image is corrupt or truncated")


def test_truncated_stream(image: Path, tmp_path: Path) -> None:
    data = image.read_bytes()
    image.write_bytes(data[: len(data) - 64 * 1024])
    _refused(image, tmp_path, "the stream ended at byte")


def test_cluster_mapped_twice(image: Path, tmp_path: Path) -> None:
    poke_l2_entry(image, 0, 1, read_l2_entry(image, 0, 0))
    _refused(image, tmp_path, "is also another guest cluster")


def test_data_cluster_pointing_at_the_l1_table(image: Path, tmp_path: Path) -> None:
    poke_l2_entry(image, 0, 0, 0x30000 | 1 << 63)
    _refused(image, tmp_path, "is also metadata")


def test_unaligned_cluster_offset(image: Path, tmp_path: Path) -> None:
    poke_l2_entry(image, 0, 0, read_l2_entry(image, 0, 0) + 512)
    _refused(image, tmp_path, "unaligned")


def test_cluster_far_beyond_the_image(image: Path, tmp_path: Path) -> None:
    poke_l2_entry(image, 0, 0, 1 << 50 | 1 << 63)
    _refused(image, tmp_path, "host offset 0x4000000000000")


def test_garbage_compressed_cluster(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"compress me " * 100000)
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", raw, image)
    entry = read_l2_entry(image, 0, 0)
    start = entry & ((1 << 54) - 1)
    with image.open("r+b") as f:
        f.seek(start)
        f.write(b"\xff" * 64)
    _refused(image, tmp_path, "cannot be decompressed")


def test_l2_table_offset_unaligned(image: Path, tmp_path: Path) -> None:
    entry = l1_entries(image)[0]
    with image.open("r+b") as f:
        f.seek(0x30000)
        f.write((entry + 512).to_bytes(8, "big"))
    _refused(image, tmp_path, "L2 table offset .* unaligned")


def test_extended_l2_subcluster_both_allocated_and_zero(tmp_path: Path) -> None:
    image = tmp_path / "ext.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "extended_l2=on", image, str(8 * MiB))
    qemu_io(image, "write -P 1 0 64k")
    table = l1_entries(image)[0] & L2_OFFSET_MASK
    with image.open("r+b") as f:
        f.seek(table + 8)
        f.write((1 << 32 | 1).to_bytes(8, "big"))
    _refused(image, tmp_path, "both allocated and zero")
