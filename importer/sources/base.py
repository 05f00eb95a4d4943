"""The protocol every streaming source implements: open a connection and yield the image's bytes.

A source only connects and streams; format detection, decompression, checksums and writing are the
pipeline's job, so every source (HTTP now; S3, GCS, registry layers and uploads later) gets the same
safety. Sources raise `SourceUnavailable` when they cannot start and `TransferInterrupted` when a
stream breaks off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class SourceStream:
    chunks: AsyncIterator[bytes]
    total: int | None
    description: str
    labels: dict[str, str] = field(default_factory=dict)  # for the termination message (registry images)


class Source(Protocol):
    kind: str

    def open(self) -> AbstractAsyncContextManager[SourceStream]: ...
