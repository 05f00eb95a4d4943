"""The in-order byte stream of one resumable upload, handed piece by piece from chunk requests to the
one pipeline that lives for the whole upload.

A single-slot rendezvous: a request `offer`s a piece and returns only once the pipeline has taken it;
`offset` counts the bytes taken, so it is exactly where the next chunk must start. A request that is
cancelled (its connection dropped, or a newer request took over) withdraws an untaken piece, so an
offered-but-not-taken byte is never counted. The pipeline side (`chunks`) waits up to `idle_timeout`
for the next piece and then fails the upload; `abort` fails it at once. Pipeline failures never
cancel the pipeline task (its transfer thread would be left waiting): they are raised from `chunks`,
which the pipeline turns into a clean failure. Used by `importer.uploadserver.resumable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from importer.errors import TransferInterrupted


class FeedClosed(Exception):
    """The pipeline stopped taking bytes (it finished or failed)."""


class ChunkFeed:
    def __init__(self, idle_timeout: float) -> None:
        self.offset = 0
        self.ended = False
        self.abandoned = False  # no chunk came for `idle_timeout`: the client gave the upload up
        self._idle_timeout = idle_timeout
        self._piece: bytes | None = None
        self._closed = False
        self._abort: TransferInterrupted | None = None
        self._cond = asyncio.Condition()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The pipeline's source: pieces in order, until `end`."""
        while True:
            async with self._cond:
                try:
                    async with asyncio.timeout(self._idle_timeout):
                        await self._cond.wait_for(lambda: self._piece is not None or self.ended or bool(self._abort))
                except TimeoutError as e:
                    self.abandoned = True
                    raise TransferInterrupted(f"resumable upload abandoned: no chunk arrived for "
                                              f"{self._idle_timeout:.0f}s at offset {self.offset}") from e
                if self._abort is not None:
                    raise self._abort
                piece, self._piece = self._piece, None
                if piece is None:
                    return
                self.offset += len(piece)
                self._cond.notify_all()
            yield piece

    async def offer(self, piece: bytes) -> None:
        """Hand `piece` (non-empty) to the pipeline; returns once it has been taken."""
        async with self._cond:
            await self._cond.wait_for(lambda: self._piece is None or self._closed)
            if self._closed or self.ended:
                raise FeedClosed("the upload is no longer receiving data")
            end = self.offset + len(piece)
            self._piece = piece
            self._cond.notify_all()
            try:
                await self._cond.wait_for(lambda: self.offset >= end or self._closed)
            finally:
                if self.offset < end and self._piece is piece:
                    self._piece = None  # withdrawn: never taken, never counted
                    self._cond.notify_all()
            if self.offset < end:
                raise FeedClosed("the upload stopped before taking this chunk")

    async def end(self) -> None:
        """No more bytes: the pipeline sees EOF at `offset`."""
        async with self._cond:
            self.ended = True
            self._cond.notify_all()

    async def abort(self, reason: str) -> None:
        """Fail the upload's pipeline (the client cancelled it, or the server is stopping)."""
        async with self._cond:
            self._abort = TransferInterrupted(reason)
            self._cond.notify_all()

    async def close(self) -> None:
        """The pipeline is over: wake and refuse every pending and future offer."""
        async with self._cond:
            self._closed = True
            self._cond.notify_all()
