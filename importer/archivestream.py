"""The decoded tar stream an archive import reads, as the file object `tarfile` is given: it knows its
tar offset (`tell`), seeks forward only (by reading), and keeps the bytes read since the extractor's
last mark (`importer.archivestate.ArchiveState`), so a record taken between marks can carry them.

`tarfile` in its random-access mode reads exactly what it needs (a header, a member's data), unlike its
stream mode, which buffers ahead; so the tar offset here is the decoder's output position and a
checkpoint knows which decoded bytes the tar reader has not taken in. Used by `importer.archive`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable

from importer.reader import Reader

CARRY_LIMIT = 64 << 10  # past this many bytes since the last mark, no record is offered until the next mark


class TarStream:
    def __init__(self, inner: Reader, start: int, on_piece: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._pos = start
        self._since = bytearray()
        self._overflow = False
        self.on_piece = on_piece  # after every read from `inner`, while the carry is small

    def tell(self) -> int:
        return self._pos

    def mark(self) -> None:
        """The extractor's state now describes this offset: forget the bytes read before it."""
        self._since.clear()
        self._overflow = False

    @property
    def carry(self) -> bytes | None:
        """The bytes read since the last mark (None: too many were, no record can be taken)."""
        return None if self._overflow else bytes(self._since)

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes, fewer only at the end of the stream (tar headers must come whole)."""
        parts: list[bytes] = []
        remaining = size
        while remaining != 0:
            piece = self.read_some(remaining if remaining > 0 else 1 << 20)
            if not piece:
                break
            parts.append(piece)
            remaining -= len(piece) if remaining > 0 else 0
        return b"".join(parts)

    def read_some(self, size: int) -> bytes:
        """One read from the decoded stream (it may stop short, at a decoder boundary). Asked whether it
        is at a boundary, a zstd decoder hands out the one byte it read ahead to find out on its own:
        that byte is joined with the next read, or every read while a record is due would be one byte."""
        piece = self._inner.read(size)
        if len(piece) == 1 < size:  # a byte a decoder read ahead to see whether a frame ended (zstd): go on
            piece += self._inner.read(size - 1)
        if piece:
            self._pos += len(piece)
            if not self._overflow:
                self._since += piece
                if len(self._since) > CARRY_LIMIT:
                    self._since.clear()
                    self._overflow = True
            if self.on_piece is not None and not self._overflow:
                self.on_piece()
        return piece

    def seek(self, offset: int, whence: int = 0, /) -> int:
        if whence != 0 or offset < self._pos:
            raise tarfile.ReadError(f"the archive would have to be read backwards (to byte {offset} from "
                                    f"{self._pos}): a hard link to a member that was not extracted?")
        while self._pos < offset:
            if not self.read_some(min(offset - self._pos, 1 << 20)):
                raise tarfile.ReadError("unexpected end of data")
        return self._pos
