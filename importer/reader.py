"""`Reader`: the one method every byte source of the importer offers (`read(size)`, b"" at the end).

A module of its own because the decoders (`importer.formats`, and the frame- and block-walking
`importer.zstdframes` and `importer.xzblocks` it uses) all take one, and none of them should have to
import another just for the type."""

from __future__ import annotations

from typing import Protocol


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
