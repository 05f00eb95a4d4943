"""xz decompression block by block, so a checkpoint can restart at a block boundary inside a stream
(`xz -T` writes a block every few tens of MiB; a single-threaded `xz` writes one block per stream).

Python's lzma decodes a whole stream and does not say where its blocks end, and it can only check a
stream's index from the stream's start. So `XzBlocks` walks the format itself (the .xz file format
spec: stream header, block headers, LZMA2 chunk headers up to the end marker, block padding and
check, index, stream footer) and decodes each block with a fresh `LZMADecompressor` fed the stream's
header and that block alone: liblzma still checks the block header's CRC32 and the block's check
(CRC64, SHA-256...) in C. The index is checked here against the blocks seen (sizes, count, CRC32),
and the footer against the header, as liblzma would (in constant memory: a count, size sums and a
CRC32 of the records, however many blocks a hostile stream has). Between blocks, `boundary()` gives
the input read past the last block, and `state()` what a fresh reader needs to continue the stream:
its header and that summary of the blocks seen. Stream padding and several streams are read as before;
bytes after the last stream that are not a stream are ignored (as `lzma.LZMAFile` does); input that
ends inside a stream raises EOFError. Used by `importer.formats`.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importer.reader import Reader

_MAGIC = b"\xfd7zXZ\x00"
_CHECK_SIZES = (0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64)
_INPUT = 256 << 10
_RECORD = struct.Struct("<QQ")
_SUMMARY = struct.Struct("<QQQI")  # blocks, unpadded sizes, uncompressed sizes, CRC32 of the records


class _Blocks:
    """The blocks of a stream as its index must list them, in constant memory (as liblzma's index
    hash does): their count, the sums of their sizes and a CRC32 over the records."""

    def __init__(self, summary: bytes = b"") -> None:
        self.count, self.unpadded, self.uncompressed, self.crc = (
            _SUMMARY.unpack(summary) if summary else (0, 0, 0, 0))

    def add(self, unpadded: int, uncompressed: int) -> None:
        self.count += 1
        self.unpadded += unpadded
        self.uncompressed += uncompressed
        self.crc = zlib.crc32(_RECORD.pack(unpadded, uncompressed), self.crc)

    def summary(self) -> bytes:
        return _SUMMARY.pack(self.count, self.unpadded, self.uncompressed, self.crc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Blocks) and self.summary() == other.summary()

    __hash__ = None  # type: ignore[assignment]


class XzFormatError(ValueError):
    """Bytes that break the .xz format (liblzma would say "Corrupt input data")."""


class _Input:
    """The compressed bytes, buffered: look ahead, then take."""

    def __init__(self, inner: Reader, initial: bytes = b"") -> None:
        self._inner = inner
        self._data = initial
        self._i = 0

    def pending(self) -> bytes:
        return self._data[self._i:]

    def fill(self, count: int) -> bool:
        """At least `count` bytes buffered; False when the input ends first."""
        while len(self._data) - self._i < count:
            more = self._inner.read(_INPUT)
            if not more:
                return False
            self._data = self._data[self._i:] + more
            self._i = 0
        return True

    def peek(self, count: int) -> bytes:
        return self._data[self._i:self._i + count]

    def take(self, count: int) -> bytes:
        piece = self._data[self._i:self._i + count]
        self._i += len(piece)
        return piece

    def need(self, count: int) -> bytes:
        if not self.fill(count):
            raise EOFError("xz stream ended early")
        return self.take(count)


class XzBlocks:
    """The decompressed bytes of every block of every stream in turn."""

    def __init__(self, inner: Reader, *, at_boundary: bool = False, state: bytes = b"") -> None:
        """`at_boundary`: continue from a checkpoint's boundary, inside the stream `state` describes
        (or between streams when it is empty)."""
        self._in = _Input(inner)
        self._streams = 1 if at_boundary else 0
        self._header = state[:12]  # the current stream's header; empty between streams
        self._blocks = _Blocks(state[12:])
        self._block: lzma.LZMADecompressor | None = None
        self._header_size = 0
        self._data = 0  # LZMA2 bytes of the current block walked so far; -1 once its end marker was seen
        self._output = 0
        self._unpadded = 0
        self._left = 0  # bytes of the current block still to feed, as far as its structure is known
        self._stash = b""  # output produced while `boundary` finished a block (none in a valid stream)
        self._done = False

    def boundary(self) -> bytes | None:
        """The input read past the last complete block when between blocks (or streams), else None.
        A block whose output has all been read but whose end marker, padding and check have not been
        fed yet is finished here (they produce no output), so every block end is seen."""
        block = self._block
        if block is not None:
            if self._stash:
                return None
            # Until the LZMA2 end marker is fed: inside a chunk, or another chunk follows?
            if self._data >= 0 and (self._left or not (self._in.fill(1) and self._in.peek(1) == b"\0")):
                return None
            if not block.needs_input:  # input left inside liblzma: any output?
                self._stash = block.decompress(b"", 1)
                if self._stash or not block.needs_input:
                    return None
            while piece := self._next_piece():
                self._stash += block.decompress(piece, _INPUT)  # nothing, in a valid stream
            if self._stash or not block.needs_input:
                return None
            self._blocks.add(self._unpadded, self._output)
            self._block = None
        return self._in.pending()

    def state(self) -> bytes:
        """What `XzBlocks(state=...)` needs to continue from this boundary."""
        return self._header + self._blocks.summary() if self._header else b""

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        if self._stash:  # what `boundary` read ahead, and as much more as fits
            out, self._stash = self._stash[:size], self._stash[size:]
            self._output += len(out)
            if len(out) < size and self._block is not None and not self._stash:
                out += self._decode(size - len(out))
            return out
        while not self._done:
            if self._block is not None:
                if out := self._decode(size):
                    return out
            elif not self._header:
                self._start_stream()
            elif self._in.fill(1) and self._in.peek(1) == b"\0":
                self._end_stream()
            else:
                self._start_block()
        return b""

    def _start_stream(self) -> None:
        while self._in.fill(4) and self._in.peek(4) == b"\0\0\0\0":  # stream padding
            self._in.take(4)
        complete = self._in.fill(12)
        if not (complete and self._in.peek(12).startswith(_MAGIC)):
            if self._streams:
                self._done = True  # the end, or bytes after the last stream that are not a stream: ignored
                return
            if not complete:
                raise EOFError("xz stream ended early")
            raise XzFormatError("not an xz stream")
        header = self._in.take(12)
        if zlib.crc32(header[6:8]) != int.from_bytes(header[8:12], "little") or header[6] or header[7] & 0xF0:
            raise XzFormatError("xz stream header is corrupt or of an unsupported version")
        self._header, self._blocks = header, _Blocks()
        self._streams += 1

    def _start_block(self) -> None:
        if not self._in.fill(1):
            raise EOFError("xz stream ended early")
        size = (self._in.peek(1)[0] + 1) * 4
        header = self._in.need(size)
        self._block = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self._block.decompress(self._header + header, 0)  # liblzma checks the header's CRC32
        self._header_size, self._data, self._output, self._left = size, 0, 0, 0

    def _next_piece(self) -> bytes:
        """The next bytes of the current block (b"" once all of it, check included, was fed)."""
        if self._left == 0:
            self._left = self._next_structure()
            if self._left == 0:
                return b""
        if not self._in.fill(1):
            raise EOFError("xz stream ended early")
        piece = self._in.take(min(self._left, _INPUT))
        self._left -= len(piece)
        return piece

    def _next_structure(self) -> int:
        """How many bytes the next LZMA2 chunk (or, after the end marker, the block's padding and
        check) takes; 0 once the block is complete. Chunks are walked by their headers alone."""
        if self._data < 0:
            return 0
        if not self._in.fill(1):
            raise EOFError("xz stream ended early")
        control = self._in.peek(1)[0]
        if control == 0:  # the end of the LZMA2 data
            check = _CHECK_SIZES[self._header[7] & 0x0F]
            self._unpadded = self._header_size + self._data + 1 + check
            padding = -(self._header_size + self._data + 1) % 4
            self._data = -1
            return 1 + padding + check
        if control in (1, 2):  # an uncompressed chunk
            head_size, size_at = 3, 1
        elif control >= 0x80:  # an LZMA chunk; from 0xC0 on with a properties byte
            head_size, size_at = (6 if control >= 0xC0 else 5), 3
        else:
            raise XzFormatError("corrupt LZMA2 data in an xz block")
        if not self._in.fill(head_size):
            raise EOFError("xz stream ended early")
        length = head_size + int.from_bytes(self._in.peek(head_size)[size_at:size_at + 2], "big") + 1
        self._data += length
        return length

    def _decode(self, size: int) -> bytes:
        block = self._block
        assert block is not None
        while True:
            if not block.needs_input:
                out = block.decompress(b"", size)
            elif piece := self._next_piece():
                out = block.decompress(piece, size)
            else:  # all of the block was fed and decoded: liblzma has checked its check
                self._blocks.add(self._unpadded, self._output)
                self._block = None
                return b""
            if out:
                self._output += len(out)
                return out

    def _varint(self, index: bytearray) -> int:
        value, shift = 0, 0
        while True:
            byte = self._in.need(1)[0]
            index.append(byte)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise XzFormatError("bad variable-length integer in the xz index")

    def _end_stream(self) -> None:
        """Check the index against the blocks seen, and the footer against the header."""
        index = bytearray(self._in.need(1))
        if self._varint(index) != self._blocks.count:
            raise XzFormatError("xz index does not match the blocks of its stream")
        records = _Blocks()
        for _ in range(self._blocks.count):
            records.add(self._varint(index), self._varint(index))
        padding = self._in.need(-len(index) % 4)
        index += padding
        crc = self._in.need(4)
        if any(padding) or zlib.crc32(index) != int.from_bytes(crc, "little"):
            raise XzFormatError("xz index is corrupt")
        if records != self._blocks:
            raise XzFormatError("xz index does not match the blocks of its stream")
        footer = self._in.need(12)
        if (footer[10:12] != b"YZ" or footer[8:10] != self._header[6:8]
                or zlib.crc32(footer[4:10]) != int.from_bytes(footer[0:4], "little")
                or (int.from_bytes(footer[4:8], "little") + 1) * 4 != len(index) + 4):
            raise XzFormatError("xz stream footer is corrupt or does not match its header")
        self._header, self._blocks = b"", _Blocks()
