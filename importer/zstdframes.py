"""zstd decompression one frame at a time, so a checkpoint can restart at a frame boundary.

python-zstandard's multi-frame reader does not say where one frame ends, and its `decompressobj`
has no output bound (one small input can expand without limit). So `FrameSplitter` walks the frame
format itself (RFC 8878: frame header, then 3-byte block headers with their sizes, then the optional
content checksum; skippable frames by their length field) without decompressing, and hands a
per-frame `stream_reader` exactly one frame's bytes. Output stays bounded by the caller's reads, and
a stream that ends inside a frame is reported as truncated (python-zstandard's reader returns what
it has without complaint). Between frames, `ZstdFrames.boundary` gives the bytes read past the last
frame's end: where a resumed import starts a fresh decoder. Used by `importer.formats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import zstandard

if TYPE_CHECKING:
    from importer.reader import Reader

_MAGIC = 0xFD2FB528
_SKIPPABLE = 0x184D2A50  # low 4 bits are free
_DICT_ID_SIZES = (0, 1, 2, 4)
_INPUT = 256 << 10


class FrameError(ValueError):
    """Bytes that are not a zstd frame where one should start."""


class FrameSplitter:
    """A reader of the current frame's bytes (b"" at its end); `next_frame` moves to the next one."""

    def __init__(self, inner: Reader) -> None:
        self._inner = inner
        self._data = b""  # read from `inner`; `_data[_i:]` is not handed out yet, from absolute offset `_out`
        self._view = memoryview(self._data)
        self._i = 0
        self._out = 0
        self._parse_at = 0  # absolute offset of the next structure to parse
        self._end: int | None = None  # absolute end of the current frame, once its last block is seen
        self._header = True  # the next structure is a frame header (else a block header)
        self._checksum = False

    @property
    def frame_complete(self) -> bool:
        return self._end is not None and self._out >= self._end

    def pending(self) -> bytes:
        return self._data[self._i:]

    def next_frame(self) -> bool:
        """Start the next frame; False at the end of the input."""
        self._parse_at, self._end, self._header = self._out, None, True
        return bool(self.pending()) or self._fill()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        size = size if size is not None and size >= 0 else _INPUT
        while True:
            limit = self._end if self._end is not None else self._parse_at
            available = min(limit - self._out, len(self._data) - self._i)
            if available > 0:
                n = min(size, available)
                piece = self._view[self._i:self._i + n]  # no copy: zstd reads it before the next read
                self._i += n
                self._out += n
                return piece  # type: ignore[return-value]
            if self.frame_complete:
                return b""
            if not self._parse() and not self._fill():
                raise EOFError("zstd frame ended early")

    def _fill(self) -> bool:
        more = self._inner.read(_INPUT)
        if not more:
            return False
        self._data = self._data[self._i:] + more if self._i < len(self._data) else more
        self._view = memoryview(self._data)
        self._i = 0
        return True

    def _peek(self, length: int) -> bytes | None:
        """`length` bytes at `_parse_at` if they are buffered."""
        start = self._i + self._parse_at - self._out
        piece = self._data[start:start + length]
        return piece if len(piece) == length else None

    def _parse(self) -> bool:
        """Parse the structures whose bytes are buffered; False when more input is needed first."""
        if not self._header:
            return self._parse_blocks()
        magic = self._peek(4)
        if magic is None:
            return False
        number = int.from_bytes(magic, "little")
        if number & 0xFFFFFFF0 == _SKIPPABLE:
            head = self._peek(8)
            if head is None:
                return False
            self._end = self._parse_at + 8 + int.from_bytes(head[4:], "little")
            return True
        if number != _MAGIC:
            raise FrameError("bytes after a zstd frame are not another frame")
        head = self._peek(5)
        if head is None:
            return False
        descriptor = head[4]
        single = (descriptor >> 5) & 1
        content_size = (single, 2, 4, 8)[descriptor >> 6]
        self._checksum = bool(descriptor & 4)
        self._parse_at += 5 + (0 if single else 1) + _DICT_ID_SIZES[descriptor & 3] + content_size
        self._header = False
        self._parse_blocks()
        return True

    def _parse_blocks(self) -> bool:
        """Walk every block header that is buffered, in one tight loop (zero-filled disks make many
        small blocks: this loop is the splitter's whole cost)."""
        data, base, at = self._data, self._i - self._out, self._parse_at
        start, end = at, len(data) - base - 3
        while at <= end:
            value = int.from_bytes(data[base + at:base + at + 3], "little")
            kind = (value >> 1) & 3
            if kind == 3:
                raise FrameError("zstd block of the reserved type")
            at += 4 if kind == 1 else 3 + (value >> 3)
            if value & 1:
                self._end = at + (4 if self._checksum else 0)
                break
        self._parse_at = at
        return at != start


class ZstdFrames:
    """The decompressed bytes of every frame in turn."""

    def __init__(self, inner: Reader) -> None:
        self._split = FrameSplitter(inner)
        self._context = zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionReader | None = None
        self._stash = b""  # output read ahead while probing for the end of a frame
        self._done = False

    def boundary(self) -> bytes | None:
        """The input read past the last complete frame when between frames, else None."""
        if self._frame is not None:
            if self._stash or not self._split.frame_complete:
                return None
            self._stash = self._frame.read(1)
            if self._stash:
                return None
            self._finish_frame()
        return self._split.pending()

    def state(self) -> bytes:
        return b""  # a fresh reader starts between frames: nothing else to carry

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        if self._stash:
            out, self._stash = self._stash, b""
            return out
        while not self._done:
            if self._frame is None:
                if not self._split.next_frame():
                    self._done = True
                    break
                self._frame = self._context.stream_reader(
                    self._split, read_across_frames=False, closefd=False)  # type: ignore[arg-type]
            out = self._frame.read(size)
            if out:
                return out
            self._finish_frame()
        return b""

    def _finish_frame(self) -> None:
        if not self._split.frame_complete:
            raise FrameError("a zstd frame ended before the end its headers announce")
        assert self._frame is not None
        self._frame = None  # closefd=False: nothing to close
