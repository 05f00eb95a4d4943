"""Receiving a response body of known length into one reused buffer (asyncio's `BufferedProtocol`).

Why: asyncio's `StreamReader` copies each `recv` into a bytearray that it grows and trims (fresh
memory, page faults, a memmove now and then) and slices again on every read; on a shaped link chunks
arrive tens of KiB at a time, and each one then also travels through several async generators and a
wake-up of the transfer thread. That cost about a third of the importer's CPU on a 1 Gbit link. Here
the kernel writes straight into a 1 MiB buffer (`recv_into`), and its bytes are copied out once, as a
chunk, when the buffer is full, when the body ends, when the consumer is waiting and `HANDOFF` bytes
are there, or when bytes have waited `FLUSH_AFTER` (a slow link still makes steady progress). `HANDOFF`
is the whole buffer: handing a waiting consumer a quarter of it made four times as many chunks on the
benchmark's 1 Gbit link (each a wake-up of the transfer thread and a hop through the bridge) for no gain
in throughput (1 MiB arrives in ~8 ms there; a slower link is served by the timer); the 64 GiB sparse
import's CPU fell 0.95 -> 0.89 s.
Flow control: past `MAX_QUEUED` chunks nobody took, the transport stops reading until one is taken.

`importer.sources.httpwire` hands the transport to this protocol once the response head is parsed
(and gives out what its stream reader still held first); errors and the end of the connection reach
the consumer from `next_chunk`.
"""

from __future__ import annotations

import asyncio
from collections import deque

CHUNK = 1 << 20
HANDOFF = CHUNK  # a waiting consumer gets what is there once this much has arrived
MAX_QUEUED = 4
FLUSH_AFTER = 0.02


class BodyProtocol(asyncio.BufferedProtocol):
    """One response body: `expected` bytes still to come on the transport it is given."""

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self._buffer = memoryview(bytearray(CHUNK))
        self._filled = 0
        self._ready: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._paused = False
        self._flush_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if isinstance(transport, asyncio.ReadTransport) and not transport.is_reading():
            transport.resume_reading()  # the stream reader may have paused it when its buffer was full

    def get_buffer(self, sizehint: int) -> memoryview:
        room = CHUNK - self._filled
        if self._expected > 0:
            room = min(room, self._expected)
        return self._buffer[self._filled:self._filled + room]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        self._expected -= nbytes
        if self._expected < 0:
            self._fail(ConnectionError("the server sent more than its Content-Length"))
        elif self._filled == CHUNK or self._expected == 0 or (self._waiter is not None and self._filled >= HANDOFF):
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self._flush)

    def eof_received(self) -> bool:
        self._end(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    async def next_chunk(self) -> bytes:
        """The next chunk of the body; b"" when the connection ended (the caller counts what is missing)."""
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._ready.popleft()
        if self._paused and len(self._ready) < MAX_QUEUED and isinstance(self._transport, asyncio.ReadTransport):
            self._paused = False
            self._transport.resume_reading()
        return chunk

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._filled:
            self._ready.append(bytes(self._buffer[:self._filled]))
            self._filled = 0
            self._wake()
        if len(self._ready) >= MAX_QUEUED and not self._paused and isinstance(self._transport, asyncio.ReadTransport):
            self._paused = True
            self._transport.pause_reading()

    def _end(self, exc: BaseException | None) -> None:
        self._flush()
        self._ended = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
