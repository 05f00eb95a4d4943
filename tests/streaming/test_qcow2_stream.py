"""The streaming qcow2 reader turns every shape of qcow2 qemu writes into the bytes `qemu-img convert
-O raw` gives, reading the file once front to back, and keeps out-of-order data only where it must."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.qcow2stream import Decline, SpoolExhausted
from tests.streaming.qcow2_builders import (
    MiB,
    convert_with_stream,
    move_l2_tables_to_end,
    qemu_img,
    qemu_io,
    qemu_raw,
    write_raw,
)

SIZE = 40 * MiB + 12345 * 512  # not a multiple of any cluster size
REGIONS = [(0, 300 * 1024), (7 * MiB + 4096, MiB), (SIZE - 200 * 1024, 200 * 1024)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "disk.raw"
    write_raw(path, SIZE, REGIONS)
    return path


def _assert_identical(image: Path, tmp_path: Path, **kwargs: object) -> None:
    out = tmp_path / "stream.raw"
    convert_with_stream(image, out, **kwargs)  # type: ignore[arg-type]
    assert out.read_bytes() == qemu_raw(image, tmp_path / "qemu.raw")


@pytest.mark.parametrize("options", [
    ("-o", "compat=0.10"),
    ("-o", "compat=1.1"),
    ("-c",),
    ("-c", "-o", "compat=0.10"),
    ("-c", "-o", "compression_type=zstd"),
    ("-o", "cluster_size=512"),
    ("-o", "cluster_size=4096", "-c"),
    ("-o", "cluster_size=2M"),
    ("-o", "cluster_size=2M", "-c"),
    ("-o", "extended_l2=on"),
    ("-o", "extended_l2=on,cluster_size=128k", "-c"),
    ("-o", "preallocation=metadata"),
], ids=lambda o: " ".join(o))
def test_converted_images_match_qemu(options: tuple[str, ...], reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, reference, image)
    _assert_identical(image, tmp_path)


@pytest.mark.parametrize("options", ["compat=1.1", "extended_l2=on"])
def test_guest_writes_zero_clusters_and_discards(options: str, tmp_path: Path) -> None:
    image = tmp_path / "guest.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", options, image, str(SIZE))
    qemu_io(image, "write -P 0x11 30M 3M", "write -P 0x22 0 1M", "write -z 30M 64k", "write -P 0x33 30M 4k",
            "write -z -u 31M 128k", "discard 0 64k", "write -P 0x44 16M 4k")
    _assert_identical(image, tmp_path)


def test_large_sparse_image_takes_time_of_its_data(tmp_path: Path) -> None:
    image = tmp_path / "sparse.qcow2"
    qemu_img("create", "-f", "qcow2", image, str(64 << 30))
    qemu_io(image, "write -P 0x55 0 1M", "write -P 0x66 40G 1M", f"write -P 0x77 {(64 << 30) - 65536} 64k")
    out = tmp_path / "stream.raw"
    convert_with_stream(image, out)
    assert out.stat().st_size == 64 << 30
    assert out.stat().st_blocks * 512 <= 4 * MiB
    with out.open("rb") as f:
        f.seek(40 << 30)
        assert f.read(MiB) == b"\x66" * MiB
        f.seek((64 << 30) - 65536)
        assert f.read() == b"\x77" * 65536


def test_resized_image_with_tables_after_data_is_identical(tmp_path: Path) -> None:
    """`qemu-img resize` moves the L1 table behind the data and reuses freed clusters for L2 tables."""
    image = tmp_path / "resized.qcow2"
    qemu_img("create", "-f", "qcow2", image, str(SIZE))
    qemu_io(image, "write -P 1 1M 2M")
    qemu_img("resize", image, str(600 * MiB))
    qemu_io(image, "write -P 2 590M 1M", "discard 1M 64k", "write -P 3 400M 1M")
    _assert_identical(image, tmp_path)


def test_data_before_its_tables_is_spooled_in_memory(reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "late-tables.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", reference, image)
    move_l2_tables_to_end(image)
    _assert_identical(image, tmp_path)


def test_spool_spills_to_scratch_when_memory_is_not_enough(reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "late-tables.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", reference, image)
    move_l2_tables_to_end(image)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "stream.raw"
    stream = convert_with_stream(image, out, spool_dir=scratch, spool_memory=256 * 1024)
    assert stream.spilled >= 1 * MiB
    assert out.read_bytes() == qemu_raw(image, tmp_path / "qemu.raw")
    assert list(scratch.iterdir()) == []


def test_without_scratch_too_much_early_data_says_why(reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "late-tables.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", reference, image)
    move_l2_tables_to_end(image)
    with pytest.raises(SpoolExhausted, match="precedes the L2 table that may map it"):
        convert_with_stream(image, tmp_path / "out.raw", spool_memory=256 * 1024)


def test_l1_table_far_from_the_start_is_declined(tmp_path: Path) -> None:
    image = tmp_path / "far-l1.qcow2"
    qemu_img("create", "-f", "qcow2", image, str(MiB))
    qemu_io(image, "write -P 9 0 64k")
    with image.open("r+b") as f:  # claim the L1 table lives 1 GiB in
        f.seek(40)
        f.write((1 << 30).to_bytes(8, "big"))
    with pytest.raises(Decline, match="L1 table is at byte 1073741824"):
        convert_with_stream(image, tmp_path / "out.raw")
