"""Refuses incomplete ISO uploads before they are committed.

An ISO 9660 image cut short still converts "successfully" as raw, and the pipeline then pads it to
the volume's size, so nothing downstream notices. `IsoProbe` watches the upload's wire bytes on
their way into the pipeline: when they are an ISO (plain, or behind one layer of gzip, xz or zstd,
which it decompresses a second time with bounded memory, only counting) it records the volume size
the primary volume descriptor declares and how many image bytes actually arrived. `verify` runs as
the target's pre-commit check: fewer bytes than declared, or an image pycdlib cannot open, is
refused. Images that are not ISOs (or are compressed more than once) pass through unchecked.
Used by `importer.uploadserver.processing`.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pycdlib
import zstandard
from pycdlib.pycdlibexception import PyCdlibException

from importer.errors import InvalidImage

PVD_OFFSET = 0x8000
HEADER_NEEDED = PVD_OFFSET + 2048
_OUT = 1 << 20
_MAGIC = {b"\x1f\x8b": "gz", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zst"}


def declared_size(header: bytes) -> int | None:
    """Bytes the primary volume descriptor declares (blocks x block size), or None if not an ISO."""
    if len(header) < HEADER_NEEDED or header[PVD_OFFSET:PVD_OFFSET + 6] != b"\x01CD001":
        return None
    (blocks,) = struct.unpack_from("<I", header, PVD_OFFSET + 80)
    (block_size,) = struct.unpack_from("<H", header, PVD_OFFSET + 128)
    return int(blocks) * int(block_size)


class _Counter:
    """Receives decompressed output: keeps the header, counts the rest."""

    def __init__(self) -> None:
        self.header = bytearray()
        self.length = 0

    def write(self, data: bytes) -> int:
        if len(self.header) < HEADER_NEEDED:
            self.header += data[:HEADER_NEEDED - len(self.header)]
        self.length += len(data)
        return len(data)


class _Inflater:
    """gzip members or xz streams, one after another, with output bounded per call."""

    def __init__(self, kind: str, sink: _Counter) -> None:
        self._kind = kind
        self._sink = sink
        self._new()

    def _new(self) -> None:
        self._d: zlib._Decompress | lzma.LZMADecompressor = (
            zlib.decompressobj(wbits=31) if self._kind == "gz" else lzma.LZMADecompressor())

    def write(self, data: bytes) -> None:
        while data:
            if isinstance(self._d, lzma.LZMADecompressor):
                self._sink.write(self._d.decompress(data, _OUT))
                while not self._d.eof and not self._d.needs_input:
                    self._sink.write(self._d.decompress(b"", _OUT))
            else:
                self._sink.write(self._d.decompress(data, _OUT))
                while self._d.unconsumed_tail:
                    self._sink.write(self._d.decompress(self._d.unconsumed_tail, _OUT))
            data = self._d.unused_data if self._d.eof else b""
            if self._d.eof:
                self._new()


class IsoProbe:
    def __init__(self) -> None:
        self._prefix = b""
        self._sink = _Counter()
        self._decoder: _Inflater | zstandard.ZstdDecompressionWriter | _Counter | None = None
        self._gave_up = False
        self.declared: int | None = None

    async def tap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.feed(chunk)
            yield chunk

    def feed(self, chunk: bytes) -> None:
        if self._gave_up:
            return
        if self._decoder is None:
            self._prefix += chunk
            if len(self._prefix) < 6:
                return
            chunk, self._prefix = self._prefix, b""
            self._decoder = self._decoder_for(chunk)
        try:
            self._decoder.write(chunk)
        except (zlib.error, lzma.LZMAError, zstandard.ZstdError, EOFError):
            self._give_up()  # corrupt compression: the pipeline reports it in its own words
            return
        if self.declared is None and len(self._sink.header) >= HEADER_NEEDED:
            self.declared = declared_size(bytes(self._sink.header))
            if self.declared is None:
                self._give_up()

    def _decoder_for(self, head: bytes) -> _Inflater | zstandard.ZstdDecompressionWriter | _Counter:
        kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
        if kind == "zst":
            return zstandard.ZstdDecompressor().stream_writer(
                self._sink, write_size=_OUT, closefd=False)  # type: ignore[arg-type]  # any object with write()
        return _Inflater(kind, self._sink) if kind else self._sink

    def _give_up(self) -> None:
        self._gave_up, self._decoder = True, None

    def verify(self, written: Path) -> None:
        """Pre-commit check of the written disk; a no-op unless the upload was an ISO image."""
        if self._gave_up or self.declared is None:
            return
        if self._sink.length < self.declared:
            raise InvalidImage(f"ISO image is incomplete: its volume descriptor declares {self.declared} bytes "
                               f"but only {self._sink.length} bytes were uploaded")
        iso = pycdlib.PyCdlib()
        try:
            iso.open(str(written))
            iso.close()
        except (PyCdlibException, OSError, struct.error, ValueError, IndexError) as e:
            raise InvalidImage(f"ISO image cannot be read: {e}") from e
