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
from typing import Any

from tests.support.relay import LoopbackRelay, stop_pumps


async def _nothing() -> None:
    return None


class LostReplyRelay(LoopbackRelay):
    def __init__(self, upstream_host: str, upstream_port: int, threshold: int,
                 before_drop: Callable[[], Awaitable[None]] = _nothing) -> None:
        super().__init__(upstream_host, upstream_port)
        self._threshold = threshold
        self._before_drop = before_drop
        self.dropped = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        sent = [0]
        pumps = [asyncio.create_task(self._up(reader, up_writer, sent)),
                 asyncio.create_task(self._down(up_reader, writer, sent))]
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait([*pumps, closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            await stop_pumps(pumps)

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
