"""xz decoded block by block (`importer.xzblocks`): the same bytes as liblzma's own stream decoder,
a restart point at every block end (single- and multi-stream, multi-block files as `xz -T` writes
them), a decoder restarted at each of them finishes the image, and what liblzma would refuse is
refused: a flipped byte in a block, its check, the index or the footer, and a truncated stream."""

from __future__ import annotations

import io
import lzma
import random
import subprocess
import zlib
from pathlib import Path

import pytest

from importer.errors import InvalidImage
from importer.formats import Compression, DecompressingReader

MiB = 1 << 20


@pytest.fixture(scope="module")
def data() -> bytes:
    rng = random.Random(7)
    return b"".join(rng.randbytes(256 << 10) if rng.random() < 0.5 else bytes(256 << 10) for _ in range(24))


@pytest.fixture(scope="module")
def blocks_xz(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One stream of 1 MiB blocks, written by the xz tool in threaded mode (block sizes in the headers)."""
    raw = tmp_path_factory.mktemp("xz") / "disk.raw"
    raw.write_bytes(data)
    subprocess.run(["xz", "-k", "-0", "-T2", "--block-size=1MiB", str(raw)], check=True)
    return Path(f"{raw}.xz").read_bytes()


def read_all(blob: bytes, size: int = MiB) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """The output and, at each restart point, (output so far, wire offset, decoder state)."""
    source = io.BytesIO(blob)
    reader = DecompressingReader(Compression.XZ, source)
    out, points = bytearray(), []
    while piece := reader.read(size):
        out += piece
        carry = reader.boundary()
        if carry is not None:
            points.append((len(out), source.tell() - len(carry), reader.state()))
    return bytes(out), points


def test_multi_block_stream_has_a_restart_point_at_every_block(data: bytes, blocks_xz: bytes) -> None:
    out, points = read_all(blocks_xz)
    assert out == data == lzma.decompress(blocks_xz)
    assert [p[0] for p in points] == list(range(MiB, len(data) + 1, MiB))


@pytest.mark.parametrize("size", [MiB, 100_000, 4096])
def test_a_decoder_restarted_at_any_block_boundary_finishes_the_image(data: bytes, blocks_xz: bytes,
                                                                     size: int) -> None:
    _, points = read_all(blocks_xz, size)
    assert [p[0] for p in points] == list(range(MiB, len(data) + 1, MiB))
    for produced, wire, state in points:
        rest = DecompressingReader(Compression.XZ, io.BytesIO(blocks_xz[wire:]), at_boundary=True, state=state)
        assert data[:produced] + rest.read() == data


def test_streams_padding_checks_and_trailing_bytes(data: bytes) -> None:
    blob = (lzma.compress(data[:MiB], check=lzma.CHECK_CRC32, preset=0) + bytes(8)
            + lzma.compress(data[MiB:3 * MiB], check=lzma.CHECK_SHA256, preset=0)
            + lzma.compress(data[3 * MiB:], check=lzma.CHECK_NONE, preset=0) + b"not another stream")
    out, points = read_all(blob)
    assert out == data
    assert len(points) >= 3  # one block per stream


@pytest.mark.parametrize(("where", "what"), [
    (lambda b: 300, "Corrupt input data"),  # inside the first block's data
    (lambda b: len(b) - 40, "xz"),  # the index or footer
    (lambda b: len(b) - 3, "footer"),  # the footer's magic
])
def test_corruption_is_refused(blocks_xz: bytes, where: object, what: str) -> None:
    damaged = bytearray(blocks_xz)
    at = where(blocks_xz)  # type: ignore[operator]
    damaged[at] ^= 0x10
    with pytest.raises(InvalidImage, match="corrupt") as refused:
        DecompressingReader(Compression.XZ, io.BytesIO(bytes(damaged))).read()
    assert what in str(refused.value)


@pytest.mark.parametrize("cut", [3, 20, 1000, -30, -1])
def test_truncated_streams_are_refused(blocks_xz: bytes, cut: int) -> None:
    with pytest.raises(InvalidImage, match="truncated"):
        DecompressingReader(Compression.XZ, io.BytesIO(blocks_xz[:cut])).read()


def _varints(data: bytes, at: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values, at


def _encode(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_an_index_that_lists_the_blocks_out_of_order_is_refused(blocks_xz: bytes) -> None:
    """The index's CRC32 is valid, its sizes add up, but its records are not the blocks as they came."""
    backward = (int.from_bytes(blocks_xz[-8:-4], "little") + 1) * 4
    start = len(blocks_xz) - 12 - backward
    index = blocks_xz[start:-12]
    (count,), at = _varints(index, 1, 1)
    fields, end = _varints(index, at, 2 * count)
    records = list(zip(fields[::2], fields[1::2], strict=True))
    other = next(i for i, record in enumerate(records) if record != records[0])
    records[0], records[other] = records[other], records[0]
    body = index[:at] + b"".join(_encode(u) + _encode(s) for u, s in records)
    body += bytes(-len(body) % 4)
    assert len(body) + 4 == backward
    forged = blocks_xz[:start] + body + zlib.crc32(body).to_bytes(4, "little") + blocks_xz[-12:]
    assert end <= len(index)
    with pytest.raises(InvalidImage, match="does not match the blocks"):
        DecompressingReader(Compression.XZ, io.BytesIO(forged)).read()
