"""gzip, xz and zstd wrappers for test images, including multi-member files and an xz bomb.

`compress_file` streams a file through one codec, optionally as several independent members
(gzip members, xz streams, zstd frames) concatenated, which decompressors must read to the end.
`write_xz_bomb` assembles a tiny .xz that expands to gigabytes of zeros without ever compressing
them: one block of zeros is compressed once and repeated. `tests/support/images.py` calls both.
"""

from __future__ import annotations

import itertools
import lzma
import struct
import zlib
from pathlib import Path
from typing import Protocol

import zstandard

from tests.support.catalog import Compression, MiB

_CHUNK = 4 * MiB


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _compressor(codec: Compression, size: int) -> _Compressor:
    if codec is Compression.GZIP:
        return zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip header/trailer
    if codec is Compression.XZ:
        return lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=0)
    compressor: _Compressor = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    return compressor


def compress_file(source: Path, target: Path, codec: Compression, *, members: int = 1) -> None:
    """Compress `source` into `target`, as `members` concatenated independent members."""
    size = source.stat().st_size
    bounds = [size * i // members for i in range(members + 1)]
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for start, end in itertools.pairwise(bounds):
            compressor = _compressor(codec, end - start)
            remaining = end - start
            while remaining > 0:
                chunk = reader.read(min(_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"{source} shrank while being compressed")
                remaining -= len(chunk)
                writer.write(compressor.compress(chunk))
            writer.write(compressor.flush())


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FLAGS_CRC32 = b"\x00\x01"
_LZMA2_ID = 0x21
_DICT_1MIB = 16  # LZMA2 dictionary-size property: (2 | 0) << (16 // 2 + 11) = 1 MiB


def write_xz_bomb(target: Path, expanded_size: int, *, block_size: int = 16 * MiB) -> None:
    """A single-stream .xz of `expanded_size` zero bytes, built from one repeated block.

    The container is assembled by hand (xz file format 1.x): stream header, identical blocks each
    holding `block_size` zeros as raw LZMA2 with a CRC32 check, the index listing them, and the
    stream footer. Only one block is ever compressed, so a gigabyte costs milliseconds.
    """
    if expanded_size % block_size:
        raise ValueError("expanded size must be a multiple of the block size")
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": MiB}]
    payload = lzma.compress(bytes(block_size), format=lzma.FORMAT_RAW, filters=filters)
    filter_flags = _varint(_LZMA2_ID) + _varint(1) + bytes([_DICT_1MIB])
    # Block flags: one filter, compressed and uncompressed sizes present.
    # Block flags 0xC0: one filter; compressed and uncompressed sizes present.
    fields = bytes([0xC0]) + _varint(len(payload)) + _varint(block_size) + filter_flags
    padding = -(1 + len(fields)) % 4
    size_byte = (1 + len(fields) + padding + 4) // 4 - 1  # header size incl. its CRC32, in words - 1
    header = bytes([size_byte]) + fields + bytes(padding)
    block_header = header + _crc(header)
    block = block_header + _pad4(payload) + _crc(bytes(block_size))
    count = expanded_size // block_size
    unpadded = len(block_header) + len(payload) + 4
    index_body = _pad4(b"\x00" + _varint(count) + (_varint(unpadded) + _varint(block_size)) * count)
    index = index_body + _crc(index_body)
    backward = struct.pack("<I", len(index) // 4 - 1) + _XZ_FLAGS_CRC32
    with open(target, "wb") as writer:
        writer.write(_XZ_MAGIC + _XZ_FLAGS_CRC32 + _crc(_XZ_FLAGS_CRC32))
        for _ in range(count):
            writer.write(block)
        writer.write(index)
        writer.write(_crc(backward) + backward + b"YZ")
