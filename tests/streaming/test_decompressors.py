"""gzip and xz are unwrapped member after member, fed in large pieces, with the stdlib wrappers' rules
for padding, trailing bytes and truncation."""

from __future__ import annotations

import gzip
import io
import lzma
import os

import pytest

from importer.errors import InvalidImage
from importer.formats import Compression, DecompressingReader

DATA = os.urandom(300_000) + bytes(5 << 20) + b"tail" * 1000


def _read_all(kind: Compression, blob: bytes, size: int = 1 << 20) -> bytes:
    reader = DecompressingReader(kind, io.BytesIO(blob))
    return b"".join(iter(lambda: reader.read(size), b""))


@pytest.mark.parametrize("size", [1, 4096, 1 << 20])
def test_gzip_members_with_zero_padding(size: int) -> None:
    blob = gzip.compress(DATA[:1000]) + bytes(512) + gzip.compress(DATA[1000:]) + bytes(100)
    assert _read_all(Compression.GZIP, blob, size if size > 1 else 7) == DATA


def test_xz_streams_and_trailing_bytes_are_ignored() -> None:
    blob = lzma.compress(DATA[:5000]) + lzma.compress(DATA[5000:]) + b"not xz at all"
    assert _read_all(Compression.XZ, blob) == DATA


@pytest.mark.parametrize(("kind", "compress"), [(Compression.GZIP, gzip.compress), (Compression.XZ, lzma.compress)])
def test_truncated_stream_is_refused(kind: Compression, compress: object) -> None:
    blob = compress(DATA)  # type: ignore[operator]
    with pytest.raises(InvalidImage, match="ended before its end marker"):
        _read_all(kind, blob[: len(blob) // 2])


def test_gzip_garbage_after_a_member_is_corruption() -> None:
    with pytest.raises(InvalidImage, match="corrupt"):
        _read_all(Compression.GZIP, gzip.compress(DATA) + b"garbage")


def test_gzip_crc_is_checked() -> None:
    blob = bytearray(gzip.compress(DATA))
    blob[-8] ^= 0xFF
    with pytest.raises(InvalidImage, match="corrupt"):
        _read_all(Compression.GZIP, bytes(blob))
