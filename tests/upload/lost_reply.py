"""A TCP relay on loopback that loses the reply to an upload's last request: it forwards both ways until
`threshold` bytes have gone client → upstream on a connection, and then, at the first byte coming back,
runs `before_drop` (the test's chance to let the server finish) and aborts both sides without passing
that answer on. The upstream got the whole request; the client never learns what it said.

TLS passes through untouched (the count includes TLS framing, so set the threshold to the image size:
the crossing happens inside the final chunk's body). Only the first such reply is lost; later
connections are relayed faithfully. Used by the resumable-upload tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def _nothing() -> None:
    return None


class LostReplyRelay:
    def __init__(self, upstream_host: str, upstream_port: int, threshold: int,
                 before_drop: Callable[[], Awaitable[None]] = _nothing) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._threshold = threshold
        self._before_drop = before_drop
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self.port = 0
        self.connections = 0
        self.dropped = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._closing.set()  # every connection tears itself down (cancelling them would upset asyncio's streams)
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        sent = [0]
        pumps = [asyncio.create_task(self._up(reader, up_writer, sent)),
                 asyncio.create_task(self._down(up_reader, writer, sent))]
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait([*pumps, closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await pump
            writer.transport.abort()
            up_writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[int]) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(64 * 1024):
                sent[0] += len(data)
                writer.write(data)
                await writer.drain()

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[int]) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(64 * 1024):
                if not self.dropped and sent[0] >= self._threshold:
                    self.dropped += 1
                    await self._before_drop()
                    return  # the caller aborts both sides: this answer never reaches the client
                writer.write(data)
                await writer.drain()
