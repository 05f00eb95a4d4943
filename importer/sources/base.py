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

A source that cannot continue from an offset alone (a registry: the disk file lies inside a tar inside
a compressed layer blob) keeps its own restart points as it streams (`SourceStream.restart_points`);
each checkpoint record keeps the newest one at or before its offset (`Checkpoint.source_state`) and a
restarted importer hands it back to `open_from` (`RestartableSource`). Its stream then starts at the
offset, or at 0 with the reason in `started_over`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from importer.checkpoint import SourceIdentity


class SourcePoints(Protocol):
    """A stream's own restart points (`importer.sources.registry.restart.RestartPoints`)."""

    unavailable: str | None  # why this stream offers none (its imports are not checkpointed)

    def at_or_before(self, offset: int) -> bytes | None:
        """The saved state of the newest point at or before `offset` of the stream, if there is one."""
        ...


@dataclass
class SourceStream:
    chunks: AsyncIterator[bytes]
    total: int | None
    description: str
    labels: dict[str, str] = field(default_factory=dict)  # for the termination message (registry images)
    identity: SourceIdentity | None = None  # None: the source cannot say which version it served
    start: int = 0  # the source offset of the first byte of `chunks`
    restart_points: SourcePoints | None = None  # a source that restarts from its own saved state
    started_over: str | None = None  # why a stream asked for from an offset starts at 0


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


@runtime_checkable
class RestartableSource(Protocol):
    kind: str

    def open(self) -> AbstractAsyncContextManager[SourceStream]: ...

    def open_from(self, offset: int, identity: SourceIdentity,
                  state: bytes) -> AbstractAsyncContextManager[SourceStream]:
        """The source from `offset` on, continuing the restart point `state` (at or before it) if the source
        is still `identity` and the point can be continued; else from 0, saying why in `started_over`."""
        ...
