"""A TCP relay on loopback that behaves like an unfriendly ingress: it forwards bytes both ways between
a client and an upstream server, drops a connection (both sides, abruptly) once it has been idle for
`idle_timeout` seconds, and cuts connections after a byte budget taken from `budgets` (one budget per
connection, counted client → upstream, so a cut lands in the middle of a request body).

TLS passes through untouched, so the client still talks TLS to the server behind the relay.
Used by the resumable-upload tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


class LoopbackRelay:
    """What every relay here shares: a listener on 127.0.0.1, one task per client connection with its own
    connection upstream, and a `close` that lets every connection tear itself down (cancelling them would
    upset asyncio's streams). Subclasses say what happens between the two sides in `_relay`; both sides
    are aborted when it returns."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self.port = 0
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._closing.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()

    def _accepted(self) -> Any:
        """A client connected (before the upstream connection is made): what `_relay` gets as `context`."""
        return None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        raise AssertionError("a relay says what it does with a connection")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        context = self._accepted()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        try:
            await self._relay(reader, writer, up_reader, up_writer, context)
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            self._tasks.discard(task)


async def stop_pumps(pumps: list[asyncio.Task[Any]]) -> None:
    """Cancel the copying tasks of a connection and wait until they are gone."""
    for pump in pumps:
        pump.cancel()
    for pump in pumps:
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pump


class CuttingRelay(LoopbackRelay):
    def __init__(self, upstream_host: str, upstream_port: int, *, idle_timeout: float | None = None,
                 budgets: Iterable[int] = ()) -> None:
        super().__init__(upstream_host, upstream_port)
        self._idle_timeout = idle_timeout
        self._budgets = list(budgets)
        self.cuts = 0
        self.idle_drops = 0

    def _accepted(self) -> int | None:
        return self._budgets.pop(0) if self._budgets else None  # this connection's byte budget

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        budget, activity = context, asyncio.Event()
        pumps = [asyncio.create_task(self._pump(reader, up_writer, activity, budget)),
                 asyncio.create_task(self._pump(up_reader, writer, activity, None))]
        try:
            await self._watch(pumps, activity)
        finally:
            await stop_pumps(pumps)

    async def _watch(self, pumps: list[asyncio.Task[bool]], activity: asyncio.Event) -> None:
        closing = asyncio.create_task(self._closing.wait())
        try:
            await self._watch_until(pumps, activity, closing)
        finally:
            closing.cancel()

    async def _watch_until(self, pumps: list[asyncio.Task[bool]], activity: asyncio.Event,
                           closing: asyncio.Task[bool]) -> None:
        while True:
            waiter = asyncio.create_task(activity.wait())
            done, _ = await asyncio.wait({*pumps, waiter, closing}, timeout=self._idle_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if closing in done:
                return
            if not done:
                self.idle_drops += 1
                return
            if any(pump in done for pump in pumps):
                if any(pump.done() and not pump.cancelled() and pump.result() for pump in pumps):
                    self.cuts += 1
                return
            activity.clear()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: asyncio.Event,
                    budget: int | None) -> bool:
        """Copy until EOF (False) or until the budget is spent (True: a deliberate cut)."""
        try:
            while data := await reader.read(64 * 1024):
                if budget is not None:
                    if len(data) >= budget:
                        writer.write(data[:budget])
                        await writer.drain()
                        return True
                    budget -= len(data)
                writer.write(data)
                await writer.drain()
                activity.set()
        except OSError:
            return False
        return False
