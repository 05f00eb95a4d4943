"""A resumable upload through an ingress-like relay that cuts connections mid-chunk and drops idle
ones, then through the proxy, to the upload server: it completes byte-identical, with a fresh token
for every request (as the CLI renews them)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp

from tests.support.catalog import ImageSet
from tests.support.relay import CuttingRelay
from tests.support.tls import TestPKI
from tests.upload.conftest import ProxyHandle, StartServer
from tests.upload.support import HOST, sha256_prefix
from uploadproxy.resolver import UploadTarget

CHUNK = 512 * 1024
PATH = "/v1beta1/upload-chunk"


async def once(body: bytes) -> AsyncIterator[bytes]:
    """A body aiohttp cannot replay by itself, so every interruption reaches the resume logic."""
    for start in range(0, len(body), 64 * 1024):
        yield body[start:start + 64 * 1024]


async def resumable_upload(session: aiohttp.ClientSession, base: str, proxy: ProxyHandle, context: ssl.SSLContext,
                           data: bytes) -> tuple[int, int]:
    """Upload `data` in chunks, resuming after every failure; returns (final status, interruptions)."""
    offset: int | None = None
    interruptions = 0
    sent = 0
    while True:
        try:
            if offset is None:
                async with session.get(base + PATH, headers=proxy.auth(), ssl=context) as response:
                    offset = int(response.headers["X-Upload-Offset"])
            end = min(offset + CHUNK, len(data))
            params = {"offset": str(offset), **({"final": "true"} if end == len(data) else {})}
            headers = {**proxy.auth(), "Content-Length": str(end - offset)}
            async with session.put(base + PATH, params=params, headers=headers, ssl=context,
                                   data=once(data[offset:end])) as response:
                await response.read()
                if response.status == 200 and end == len(data):
                    return response.status, interruptions
                assert response.status in (200, 409), response.status
                offset = int(response.headers["X-Upload-Offset"])
            sent += 1
            if sent % 3 == 0:
                await asyncio.sleep(0.8)  # idle longer than the relay tolerates, between requests
        except (aiohttp.ClientError, TimeoutError):
            interruptions += 1
            offset = None
            assert interruptions < 30


async def test_resumable_upload_survives_a_relay_that_cuts_and_drops(
        proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI, images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    relay = CuttingRelay(HOST, proxy.server.port, idle_timeout=0.5, budgets=[700_000, 1_100_123, 256 * 1024 + 77])
    await relay.start()
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    data = images.path("disk.qcow2").read_bytes()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            status, interruptions = await resumable_upload(session, f"https://{HOST}:{relay.port}", proxy, context,
                                                           data)
    finally:
        await relay.close()
    assert status == 200
    assert relay.cuts >= 2 and relay.idle_drops >= 1 and interruptions >= 2, (relay.cuts, relay.idle_drops)
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256
