"""The protocol every streaming source implements: open a connection and yield the image's bytes.

A source only connects and streams; format detection, decompression, checksums and writing are the
pipeline's job, so every source (HTTP now; S3, GCS, registry layers and uploads later) gets the same
safety. Sources raise `SourceUnavailable` when they cannot start and `TransferInterrupted` when a
stream breaks off.

A source that can continue from an offset (a ranged request) also has `open_at(offset, identity)`
(`ResumableSource`): its stream then starts at `start` (the offset, or 0 when the source sent the
whole of it instead), and every stream says which version of the source it is (`identity`) so that
`importer.resume` can tell whether a checkpoint still applies. With an `end` it asks for just that
range (a restarted qcow2 import reads its tables again that way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from importer.checkpoint import SourceIdentity


@dataclass
class SourceStream:
    chunks: AsyncIterator[bytes]
    total: int | None
    description: str
    labels: dict[str, str] = field(default_factory=dict)  # for the termination message (registry images)
    identity: SourceIdentity | None = None  # None: the source cannot say which version it served
    start: int = 0  # the source offset of the first byte of `chunks`


class Source(Protocol):
    kind: str

    def open(self) -> AbstractAsyncContextManager[SourceStream]: ...


@runtime_checkable
class ResumableSource(Protocol):
    kind: str

    def open(self) -> AbstractAsyncContextManager[SourceStream]: ...

    def open_at(self, offset: int, identity: SourceIdentity,
                end: int | None = None) -> AbstractAsyncContextManager[SourceStream]:
        """The source from `offset` on (up to `end`, exclusive, when given) if it is still `identity` and
        can send a range, else from 0."""
        ...
