"""The importer's progress endpoint: HTTPS with a self-signed certificate, the progress line upstream's
controller parses, keep-alive for a scraper that reuses its connection, and nothing else served."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator

import aiohttp
import pytest

from cdi.contracts.metrics import parse_progress
from importer.metrics import MetricsServer, self_signed_context
from importer.progress import Progress


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[MetricsServer, Progress]]:
    progress = Progress()
    server = MetricsServer(progress, "uid-7", "127.0.0.1:0")
    await server.start()
    yield server, progress
    await server.stop()


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


async def test_progress_is_served_and_rises_over_one_kept_alive_connection(
        endpoint: tuple[MetricsServer, Progress]) -> None:
    server, progress = endpoint
    url = f"https://127.0.0.1:{server.port}/metrics"
    seen = []
    connector = aiohttp.TCPConnector(ssl=insecure(), limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for percent in (0.0, 12.5, 99.0):
            progress.raise_to(percent)
            async with session.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                seen.append(parse_progress(await response.text(), "uid-7"))
        assert len(connector._conns) == 1  # the same connection served all three
    assert seen == [0.0, 12.5, 99.0]


async def test_other_paths_and_methods_are_refused(endpoint: tuple[MetricsServer, Progress]) -> None:
    server, _ = endpoint
    base = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure())) as session:
        async with session.get(base + "/") as response:
            assert response.status == 404
        async with session.post(base + "/metrics", data=b"x") as response:
            assert response.status == 405
        async with session.head(base + "/metrics") as response:
            assert response.status == 200 and await response.read() == b""


async def test_garbage_and_silent_clients_do_not_stop_the_server(endpoint: tuple[MetricsServer, Progress]) -> None:
    server, _ = endpoint
    _, silent = await asyncio.open_connection("127.0.0.1", server.port, ssl=insecure())  # never sends a request
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=insecure())
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    assert await read_until_closed(reader) == b""  # dropped without an answer
    writer.close()
    async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure())) as session,
                session.get(f"https://127.0.0.1:{server.port}/metrics") as response):
        assert response.status == 200
    silent.close()


async def test_an_oversized_request_head_is_cut_off(endpoint: tuple[MetricsServer, Progress]) -> None:
    server, _ = endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=insecure())
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (64 << 10) + b"\r\n\r\n")
    assert await read_until_closed(reader) == b""  # h11 bounds a request head: dropped without an answer
    writer.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before closing (a reset counts as closing)."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except (ConnectionResetError, ssl.SSLError):
        return b""


async def test_the_certificate_is_made_once_when_the_first_scrapers_connect() -> None:
    # Nothing is spent on a certificate until someone scrapes; two scrapers whose TLS hellos arrive while
    # it is being made both wait for it (their hellos stay in the socket) and get the same one.
    made: list[ssl.SSLContext] = []
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def certificate() -> ssl.SSLContext:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        made.append(self_signed_context())
        return made[-1]

    server = MetricsServer(Progress(), "uid-7", "127.0.0.1:0", certificate=certificate)
    await server.start()
    try:
        await asyncio.sleep(0.1)
        assert made == []
        first = asyncio.create_task(asyncio.open_connection("127.0.0.1", server.port, ssl=insecure()))
        second = asyncio.create_task(asyncio.open_connection("127.0.0.1", server.port, ssl=insecure()))
        await asyncio.sleep(0.2)  # both hellos sent, the certificate still being made
        assert not first.done() and not second.done()
        release.set()
        peers = []
        for opening in (first, second):
            reader, writer = await asyncio.wait_for(opening, 10)
            peers.append(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            writer.close()
        assert len(made) == 1 and peers[0] == peers[1]
    finally:
        await server.stop()


async def test_stopping_while_a_scraper_waits_for_the_certificate_drops_it() -> None:
    release = threading.Event()

    def certificate() -> ssl.SSLContext:
        release.wait(10)
        return self_signed_context()

    server = MetricsServer(Progress(), "uid-7", "127.0.0.1:0", certificate=certificate)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # plain TCP: no hello needed
    await asyncio.sleep(0.1)
    await asyncio.wait_for(server.stop(), 5)
    release.set()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the held connection was closed
    writer.close()
