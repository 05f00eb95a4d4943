"""The system zlib's raw inflate through ctypes, for what Python's zlib module does not expose:
stopping at a DEFLATE block boundary (`Z_BLOCK`), reading where that boundary lies in the input
(`data_type`: bit 7 at a block boundary, bit 6 after the last block, low 3 bits the unused bits of
the last byte taken), the last 32 KiB of output (`inflateGetDictionary`), and restarting there
(`inflatePrime`, `inflateSetDictionary`), as zlib's examples/zran.c does. Written for
`importer.gzipblocks`, which walks gzip members around it; `importer.formats` falls back to whole
members (Python's zlib) when `unavailable()` says why this cannot be loaded.

It binds libz.so.1, the library Python's zlib module already links, so both inflate alike. Input
and output are handed to zlib as pointers into Python buffers (no per-byte Python work); output is
inflated into one reused buffer and copied out once per call. zlib's errors become `InflateError`
with zlib's own message ("invalid distance too far back"...).
"""

from __future__ import annotations

import ctypes
import functools
import weakref

WINDOW = 32 << 10  # DEFLATE's largest distance: the history a restart needs
Z_OK, Z_STREAM_END, Z_NEED_DICT, Z_BUF_ERROR = 0, 1, 2, -5
Z_NO_FLUSH, Z_BLOCK = 0, 5
_AT_BOUNDARY, _LAST_BLOCK = 128, 64


class InflateError(ValueError):
    """zlib refused the compressed data (or the state it was asked to restart from)."""


class _Stream(ctypes.Structure):
    _fields_ = [("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
                ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
                ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
                ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
                ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong)]


@functools.cache
def _library() -> ctypes.CDLL | str:
    """libz with its argument types declared, or why it cannot be used."""
    try:
        lib = ctypes.CDLL("libz.so.1")
        stream = ctypes.POINTER(_Stream)
        lib.zlibVersion.restype = ctypes.c_char_p
        lib.inflateInit2_.argtypes = [stream, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.inflate.argtypes = [stream, ctypes.c_int]
        lib.inflatePrime.argtypes = [stream, ctypes.c_int, ctypes.c_int]
        lib.inflateSetDictionary.argtypes = [stream, ctypes.c_void_p, ctypes.c_uint]
        lib.inflateGetDictionary.argtypes = [stream, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        lib.inflateReset.argtypes = [stream]
        lib.inflateEnd.argtypes = [stream]
        version = lib.zlibVersion()
    except (OSError, AttributeError) as e:  # no such library, or one without inflateGetDictionary (< 1.2.8)
        return f"the system zlib (libz.so.1) cannot be used for block-boundary checkpoints: {e}"
    if not isinstance(version, bytes) or not version.startswith(b"1."):
        return f"the system zlib (libz.so.1) is version {version!r}, not 1.x"
    return lib


def unavailable() -> str | None:
    """Why `Inflater` cannot be used here (None: it can)."""
    found = _library()
    return found if isinstance(found, str) else None


def _lib() -> ctypes.CDLL:
    found = _library()
    if isinstance(found, str):
        raise InflateError(found)
    return found


class Inflater:
    """One raw DEFLATE stream (no zlib or gzip wrapper): `inflate` feeds input and returns output."""

    def __init__(self) -> None:
        lib = _lib()
        self._lib = lib
        self._stream = _Stream()
        version = lib.zlibVersion()
        if lib.inflateInit2_(ctypes.byref(self._stream), -15, version, ctypes.sizeof(_Stream)) != Z_OK:
            raise InflateError("zlib could not start a decompressor")
        weakref.finalize(self, lib.inflateEnd, ctypes.byref(self._stream))
        self._input = b""  # the bytes next_in points into (kept alive while zlib reads them)
        self._last_byte = 0  # the last byte zlib took from earlier input
        self._out = bytearray(0)
        self._out_address = 0
        self.eof = False  # the final block has ended

    def reset(self) -> None:
        """Start another DEFLATE stream (the next gzip member), keeping the window and output buffers."""
        self._check(self._lib.inflateReset(ctypes.byref(self._stream)))
        self._stream.avail_in, self._stream.data_type = 0, 0
        self._input, self._last_byte, self.eof = b"", 0, False

    def restart(self, bits: int, byte: int, window: bytes) -> None:
        """Continue at a block boundary: `bits` unused bits of `byte` (the input byte before the next
        one fed) still to read, and the output's last `window` bytes as history."""
        if not 0 <= bits < 8 or not 0 <= byte < 256 or len(window) > WINDOW:
            raise InflateError("the saved inflate state is out of range")
        self._check(self._lib.inflatePrime(ctypes.byref(self._stream), bits, byte >> (8 - bits)) if bits else Z_OK)
        if window:
            self._check(self._lib.inflateSetDictionary(ctypes.byref(self._stream), window, len(window)))
        self._last_byte = byte

    def feed(self, data: bytes) -> None:
        """Input for the following `inflate` calls (only when the last of the previous was taken)."""
        assert not self._stream.avail_in
        data = data if isinstance(data, bytes) else bytes(data)
        if self._input:
            self._last_byte = self._input[-1]
        self._input = data
        self._stream.next_in = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        self._stream.avail_in = len(data)

    @property
    def needs_input(self) -> bool:
        return not self._stream.avail_in

    @property
    def unconsumed(self) -> bytes:
        """The input fed and not taken yet (after the final block: what follows the DEFLATE data)."""
        left = self._stream.avail_in
        return self._input[len(self._input) - left:] if left else b""

    def inflate(self, size: int, *, stop_at_block: bool = False) -> bytes:
        """Up to `size` bytes of output from the input fed (b"" when it needs more input or the final
        block ended); with `stop_at_block`, output stops at the end of the next block."""
        if self.eof:
            return b""
        if len(self._out) < max(size, 1):  # zlib wants somewhere to write, even for no output
            self._out = bytearray(max(size, 1))
            self._out_address = ctypes.addressof(ctypes.c_char.from_buffer(self._out))
        stream = self._stream
        stream.next_out, stream.avail_out = self._out_address, size
        code = self._lib.inflate(ctypes.byref(stream), Z_BLOCK if stop_at_block else Z_NO_FLUSH)
        if code == Z_STREAM_END:
            self.eof = True
        elif code != Z_BUF_ERROR:  # Z_BUF_ERROR: no progress possible without more input; not an error
            self._check(code)
        return bytes(memoryview(self._out)[:size - stream.avail_out])

    @property
    def at_block_boundary(self) -> bool:
        """Between two blocks (not after the final one), where `restart` can continue."""
        kind = self._stream.data_type
        return bool(kind & _AT_BOUNDARY) and not kind & _LAST_BLOCK and not self.eof

    def position(self) -> tuple[int, int]:
        """At a block boundary: the unused bits of the last input byte taken, and that byte."""
        bits = self._stream.data_type & 7
        if not bits:
            return 0, 0
        taken = len(self._input) - self._stream.avail_in
        return bits, self._input[taken - 1] if taken else self._last_byte

    def window(self) -> bytes:
        """The last (up to) 32 KiB of output: the history a restart here needs."""
        buffer = ctypes.create_string_buffer(WINDOW)
        length = ctypes.c_uint(0)
        self._check(self._lib.inflateGetDictionary(ctypes.byref(self._stream), buffer, ctypes.byref(length)))
        return buffer.raw[:length.value]

    def _check(self, code: int) -> None:
        if code in (Z_OK, Z_STREAM_END):
            return
        message = self._stream.msg.decode(errors="replace") if self._stream.msg else f"zlib error {code}"
        if code == Z_NEED_DICT:
            message = "a preset dictionary is needed"
        raise InflateError(message)
