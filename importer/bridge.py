"""Bridges an async source (an `AsyncIterator[bytes]` on the event loop) to the synchronous reader
that the transfer thread consumes.

Why: decompressors (zlib, lzma, zstd) and writes release the GIL, so running them in a worker thread
overlaps them with network I/O on the event loop. A bounded queue keeps memory flat: the producer
waits when the consumer falls behind. Errors on either side reach the other: a source error is raised
from `read`, and `close` stops the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from importer.errors import TransferInterrupted

_EOF = b""


class ChunkBridge:
    """Owns the producer task; `reader` is used from one worker thread."""

    def __init__(self, chunks: AsyncIterator[bytes], *, max_chunks: int = 8) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=max_chunks)
        self._task = self._loop.create_task(self._produce(chunks))
        self.reader = BridgeReader(self)

    async def _produce(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await self._queue.put(chunk)
            await self._queue.put(_EOF)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # handed to the consumer, which raises it in the transfer thread
            await self._queue.put(e)

    def next_chunk(self) -> bytes:
        """Called from the worker thread: waits for the next chunk (b"" at EOF)."""
        item = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        """Stop the producer and wake a consumer still waiting for a chunk (it then raises), so a
        cancelled import never leaves the transfer thread blocked."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(TransferInterrupted("the import was stopped before the source was read to the end"))


class BridgeReader:
    """A minimal binary file object over a ChunkBridge; serves reads from the current chunk."""

    def __init__(self, bridge: ChunkBridge) -> None:
        self._bridge = bridge
        self._chunk: memoryview = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while piece := self.read(1 << 20):
                parts.append(piece)
            return b"".join(parts)
        while not self._chunk and not self._eof:
            chunk = self._bridge.next_chunk()
            if chunk:
                self._chunk = memoryview(chunk)
            else:
                self._eof = True
        out = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return bytes(out)

    def close(self) -> None:
        """Closing is the bridge owner's job; decompressor wrappers call this and must not stop it."""
