"""gzip decompression that a checkpoint can restart at a DEFLATE block boundary inside a member, so a
single-member .gz (what `gzip` and nearly every tool write) resumes too, not only a multi-member one.

`GzipBlocks` reads the gzip framing itself (RFC 1952: header with its optional fields and header CRC,
then raw DEFLATE data, then the CRC-32 and length trailer) and inflates the data with
`importer.inflate` (the system zlib through ctypes). Most of the time it inflates as Python's zlib
would, one call per 64 KiB of input. Only when a checkpoint is wanted (`boundary()` returns None and
arms it) does the next read stop its output at the end of the current block; `boundary()` then gives
the input not yet taken, and `state()` what a fresh reader needs to continue there: the unused bits of
the last byte taken, the last 32 KiB of output (the window), and the member's running CRC-32 and length,
so the trailer is still checked after a restart (the zran.c technique). Between members (a member's
end is a block boundary too) the state is empty, as records from before this module have it.

Semantics are gzip's, as before: zero padding between members is skipped, anything else after a member
must be another member, input ending inside a member raises EOFError. A state that is corrupt or does
not fit the record is refused before anything is fetched (`restart_problem`, asked by
`importer.resume`); one that passes and still does not belong to the stream cannot produce a wrong
disk: the member's CRC-32 and length, continued from the state, fail at its trailer. Used by
`importer.formats`, which falls back to whole members when `importer.inflate` cannot be loaded.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

from importer.inflate import WINDOW, Inflater, unavailable

if TYPE_CHECKING:
    from importer.reader import Reader

_INPUT = 64 << 10  # zlib copies nothing, but a smaller carry keeps records small
_STATE = struct.Struct("<4sBBIQH")  # magic, unused bits, their byte, CRC-32 and length so far, window length
_MAGIC = b"GZB1"
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16


class GzipFormatError(ValueError):
    """Bytes that break the gzip format (its header or trailer), or a restart state that does not fit."""


def restart_problem(state: bytes, target_offset: int) -> str | None:
    """Why a record's gzip `state` cannot restart decompression (None: it can, or it is empty)."""
    if not state:
        return None
    if why := unavailable():
        return why
    try:
        length = _decode(state)[3]
    except GzipFormatError as e:
        return f"the checkpoint's gzip state is unusable ({e})"
    if length > target_offset:
        return "the checkpoint's gzip state says more was decompressed than the disk holds"
    return None


def _decode(state: bytes) -> tuple[int, int, int, int, bytes]:
    if len(state) < _STATE.size + 4 or zlib.crc32(state[:-4]) != int.from_bytes(state[-4:], "little"):
        raise GzipFormatError("its check does not match")
    magic, bits, byte, crc, length, size = _STATE.unpack_from(state)
    window = state[_STATE.size:-4]
    if magic != _MAGIC or bits > 7 or (byte and not bits) or len(window) != size or size != min(length, WINDOW):
        raise GzipFormatError("its fields do not fit together")
    return bits, byte, crc, length, window


class _Member:
    """The member being inflated: its DEFLATE stream and the CRC-32 and length of its output so far."""

    def __init__(self, inflater: Inflater, crc: int = 0, length: int = 0) -> None:
        self.inflater = inflater
        self.crc = crc
        self.length = length


class GzipBlocks:
    """The decompressed bytes of every member in turn."""

    def __init__(self, inner: Reader, *, at_boundary: bool = False, state: bytes = b"") -> None:
        """`at_boundary`: continue from a checkpoint's boundary, inside the member `state` describes
        (or between members when it is empty)."""
        self._inner = inner
        self._buf = b""  # input read and not given to an inflater (headers, trailers, what follows)
        self._members = 1 if at_boundary else 0
        self._member: _Member | None = None
        self._inflater: Inflater | None = None  # one for all members (its buffers are reused)
        self._armed = False
        self._done = False
        if state:
            bits, byte, crc, length, window = _decode(state)
            self._inflater = Inflater()
            self._member = _Member(self._inflater, crc, length)
            self._member.inflater.restart(bits, byte, window)

    def boundary(self) -> bytes | None:
        """The input not taken yet when at a block boundary or between members; else None, and the next
        read stops at the end of the current block. What produces no output (a block's end code, the
        final block's end, the trailer) is taken here first, so a read that ended with a block's last
        byte is at its boundary, and a member whose output has all been read at its end."""
        member = self._member
        if member is None:
            return self._buf
        inflater = member.inflater
        if not inflater.eof and not inflater.at_block_boundary:
            if inflater.needs_input and (data := self._more()):
                inflater.feed(data)
            inflater.inflate(0, stop_at_block=True)
        if inflater.eof:
            self._end_member()
            return self._buf
        if inflater.at_block_boundary:
            self._armed = False
            return inflater.unconsumed + self._buf
        self._armed = True
        return None

    def state(self) -> bytes:
        """What `GzipBlocks(state=...)` needs to continue from this boundary (empty between members)."""
        member = self._member
        if member is None or not member.inflater.at_block_boundary:
            return b""
        bits, byte = member.inflater.position()
        window = member.inflater.window()
        head = _STATE.pack(_MAGIC, bits, byte, member.crc, member.length, len(window)) + window
        return head + zlib.crc32(head).to_bytes(4, "little")

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while not self._done:
            if self._member is None:
                self._start_member()
            elif out := self._inflate(size):
                return out
        return b""

    def _more(self) -> bytes:
        if self._buf:
            data, self._buf = self._buf, b""
            return data
        return self._inner.read(_INPUT)

    def _fill(self, count: int) -> bool:
        while len(self._buf) < count:
            more = self._inner.read(_INPUT)
            if not more:
                return False
            self._buf += more
        return True

    def _need(self, count: int) -> bytes:
        if not self._fill(count):
            raise EOFError("gzip member ended early")
        piece, self._buf = self._buf[:count], self._buf[count:]
        return piece

    def _start_member(self) -> None:
        if self._members:  # zero padding after a member; then the end, or another member
            while True:
                self._buf = self._buf.lstrip(b"\0")
                if self._buf or not self._fill(1):
                    break
            if not self._buf:
                self._done = True
                return
        self._fill(10)
        if not b"\x1f\x8b".startswith(self._buf[:2]):  # not a member at all, however short
            raise GzipFormatError("incorrect header check")
        header = self._need(10)
        if header[2] != 8 or header[3] & 0xE0:
            raise GzipFormatError("unknown compression method or header flags")
        flags, crc = header[3], zlib.crc32(header)
        if flags & _FEXTRA:
            extra = self._need(2)
            crc = zlib.crc32(extra, crc)
            crc = self._skip(int.from_bytes(extra, "little"), crc)
        for flag in (_FNAME, _FCOMMENT):
            if flags & flag:
                crc = self._skip_string(crc)
        if flags & _FHCRC and int.from_bytes(self._need(2), "little") != crc & 0xFFFF:
            raise GzipFormatError("header crc mismatch")
        if self._inflater is None:
            self._inflater = Inflater()
        else:
            self._inflater.reset()
        self._member = _Member(self._inflater)
        self._members += 1

    def _skip(self, count: int, crc: int) -> int:
        while count:
            piece = self._need(min(count, _INPUT))
            crc, count = zlib.crc32(piece, crc), count - len(piece)
        return crc

    def _skip_string(self, crc: int) -> int:
        """A zero-terminated header field, however long, without keeping it."""
        while (end := self._buf.find(b"\0")) < 0:
            crc = zlib.crc32(self._buf, crc)
            self._buf = b""
            if not self._fill(1):
                raise EOFError("gzip member ended early")
        return self._skip(end + 1, crc)

    def _inflate(self, size: int) -> bytes:
        member = self._member
        assert member is not None
        inflater = member.inflater
        while True:
            if inflater.eof:
                self._end_member()
                return b""
            if inflater.needs_input:
                data = self._more()
                if not data:
                    raise EOFError("gzip member ended early")
                inflater.feed(data)
            block = self._armed
            out = inflater.inflate(size, stop_at_block=block)
            if out:
                member.crc = zlib.crc32(out, member.crc)
                member.length += len(out)
                return out
            # A boundary with no output before it in this read (the last read ended at the block's end,
            # or the block was empty): a read cannot return nothing, so go on to the next block's end.
            if not (block and inflater.at_block_boundary) and not inflater.needs_input and not inflater.eof:
                raise GzipFormatError("the DEFLATE data makes no progress")

    def _end_member(self) -> None:
        member = self._member
        assert member is not None and member.inflater.eof
        self._buf = member.inflater.unconsumed + self._buf
        trailer = self._need(8)
        if int.from_bytes(trailer[:4], "little") != member.crc:
            raise GzipFormatError("incorrect data check (the CRC-32 of the decompressed data does not match)")
        if int.from_bytes(trailer[4:], "little") != member.length & 0xFFFFFFFF:
            raise GzipFormatError("incorrect length check")
        self._member = None
