"""The HTTP source against servers that misbehave on purpose (raw sockets on loopback): an endless
response head, something that is not HTTP, a broken chunked body, a body that stops short, and a
server that goes silent. Each ends in a clear failure of the right kind, never a hang or a
"complete" image."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from importer.config import load_config
from importer.errors import SourceUnavailable, TransferInterrupted
from importer.sources.http import HttpSource

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_all(port: int, idle_timeout: float = 30.0) -> bytes:
    config = load_config({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{port}/disk.img"})
    source = HttpSource(config, idle_timeout=idle_timeout)
    async with source.open() as stream:
        return b"".join([chunk async for chunk in stream.chunks])


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server, port = await serve(handler)
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.close()


async def test_an_endless_response_head_is_refused(hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(10_000):  # 640 KB of headers and counting
            writer.write(b"X-Filler: " + b"a" * 54 + b"\r\n")
            await writer.drain()

    port = await hostile(handler)
    with pytest.raises(SourceUnavailable, match="HTTP request errored: RemoteProtocolError"):
        await asyncio.wait_for(read_all(port), 30)


async def test_something_that_is_not_http_is_refused(hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    port = await hostile(handler)
    with pytest.raises(SourceUnavailable, match="HTTP request errored"):
        await asyncio.wait_for(read_all(port), 30)


async def test_a_broken_chunked_body_fails_the_transfer(hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\nnonsense\r\n")
        await writer.drain()

    port = await hostile(handler)
    with pytest.raises(TransferInterrupted, match="failed to pull image"):
        await asyncio.wait_for(read_all(port), 30)


async def test_a_body_shorter_than_its_length_fails_the_transfer(hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 600)
        await writer.drain()

    port = await hostile(handler)
    with pytest.raises(TransferInterrupted, match="unexpected EOF"):
        await asyncio.wait_for(read_all(port), 30)


async def test_bytes_past_the_content_length_are_not_part_of_the_image(
        hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA-BYTES")
        await writer.drain()

    port = await hostile(handler)
    assert await asyncio.wait_for(read_all(port), 30) == b"abcd"


async def test_a_silent_server_hits_the_idle_timeout(hostile: Callable[[Handler], Awaitable[int]]) -> None:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(30)

    port = await hostile(handler)
    with pytest.raises(TransferInterrupted, match="no data within the idle timeout"):
        await asyncio.wait_for(read_all(port, idle_timeout=0.5), 20)
