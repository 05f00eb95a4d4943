"""A response body received by `importer.sources.httpbody.BodyProtocol` after `httpwire` hands it the
connection: against a real asyncio server on loopback that writes the response the way a test needs
(in small pieces, slowly, too long, or more than the reader takes)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import pytest

from importer.sources import httpbody, httpwire

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


def head(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await handler(writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/disk"
    finally:
        srv.close()


async def fetch(url: str) -> list[bytes]:
    response = await httpwire.get(url, [], ssl_context=lambda: None)  # type: ignore[arg-type,return-value]
    try:
        return [chunk async for chunk in response.body()]
    finally:
        response.close()


def test_a_body_written_in_small_pieces_arrives_whole_in_large_chunks() -> None:
    body = os.urandom(5 << 20)

    async def pieces(writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(body)) + body[:100])
        for start in range(100, len(body), 7000):
            writer.write(body[start:start + 7000])
        await writer.drain()

    async def main() -> list[bytes]:
        async with server(pieces) as url:
            return await fetch(url)

    chunks = asyncio.run(main())
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(body).digest()
    # 7,000-byte writes are handed on HANDOFF bytes or more at a time (a few timer flushes aside)
    assert len(chunks) <= len(body) // httpbody.HANDOFF + 8


def test_a_slow_trickle_is_handed_on_without_waiting_for_a_full_buffer() -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(head(300))
        for _ in range(3):
            writer.write(b"x" * 100)
            await writer.drain()
            await asyncio.sleep(0.3)

    async def main() -> list[float]:
        arrivals: list[float] = []
        async with server(trickle) as url:
            response = await httpwire.get(url, [], ssl_context=lambda: None)  # type: ignore[arg-type,return-value]
            start = asyncio.get_running_loop().time()
            async for _ in response.body():
                arrivals.append(asyncio.get_running_loop().time() - start)
            response.close()
        return arrivals

    arrivals = asyncio.run(main())
    assert len(arrivals) >= 3  # each piece arrived on its own, long before the body was complete
    assert arrivals[0] < 0.25


def test_a_body_cut_short_is_an_error_that_says_how_much_came() -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(head(3 << 20) + b"y" * (1 << 20))
        await writer.drain()

    async def main() -> None:
        async with server(cut) as url:
            await fetch(url)

    with pytest.raises(h11.RemoteProtocolError, match=f"received {1 << 20} bytes, expected {3 << 20}"):
        asyncio.run(main())


def test_bytes_past_the_content_length_are_not_taken_as_data() -> None:
    async def too_long(writer: asyncio.StreamWriter) -> None:
        writer.write(head(10))
        await writer.drain()
        await asyncio.sleep(0.1)  # the head is read on its own, so the extra bytes reach the body protocol
        writer.write(b"z" * 5000)
        await writer.drain()
        await asyncio.sleep(0.5)

    async def main() -> list[bytes]:
        async with server(too_long) as url:
            return await fetch(url)

    chunks = asyncio.run(main())
    assert b"".join(chunks) == b"z" * 10  # never more than the body: the rest is not taken as data


def test_a_reader_that_falls_behind_pauses_the_connection() -> None:
    size = 64 << 20
    sent = 0

    async def flood(writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(head(size))
        block = b"w" * (1 << 20)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
            sent += len(block)

    async def main() -> int:
        async with server(flood) as url:
            response = await httpwire.get(url, [], ssl_context=lambda: None)  # type: ignore[arg-type,return-value]
            body = response.body()
            await anext(body)
            await asyncio.sleep(1.0)  # the reader takes nothing more for a while
            held = sent
            total = sum([1 async for _ in body])  # and then drains it
            response.close()
            assert total > 0
            return held

    held = asyncio.run(main())
    # what the server got rid of is bounded by our queue plus the kernel's socket buffers, far below 64 MiB
    assert held < 32 << 20
