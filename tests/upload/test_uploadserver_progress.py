"""The upload server's progress page (ours: upstream's serves none): `GET /metrics` on the upload port, read
by the DataVolume controller's scraper, says how many bytes arrived and how many the client declared
(Content-Length), labelled with the DataVolume's uid (OWNER_UID)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from cdi.controllers.progress import HttpsProgressScraper, ProgressPage
from importer.uploadserver.config import load_config
from importer.uploadserver.main import UploadServer
from tests.support.catalog import ImageSet
from tests.support.tls import TestPKI
from tests.upload.support import HOST, upload_env

OWNER = "dv-uid-1"


async def test_bytes_received_and_declared_while_an_upload_runs(pki: TestPKI, tmp_path: Path, images: ImageSet,
                                                               mtls: ssl.SSLContext) -> None:
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    server = UploadServer(load_config(upload_env(pki, data, scratch)), owner_uid=OWNER)
    await server.start()
    scraper = HttpsProgressScraper(server.port)
    image = images.path("disk.raw").read_bytes()
    half = len(image) // 2
    resume = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield image[:half]
        await resume.wait()
        yield image[half:]

    try:
        assert await scraper.read(HOST, OWNER) == ProgressPage(0.0, 0, None)  # waiting for its user
        headers = {"Content-Length": str(len(image))}
        async with aiohttp.ClientSession() as session:
            upload = asyncio.create_task(session.post(f"https://{HOST}:{server.port}/v1beta1/upload", data=body(),
                                                      headers=headers, ssl=mtls))
            for _ in range(200):
                page = await scraper.read(HOST, OWNER)
                if page is not None and page.done:
                    break
                await asyncio.sleep(0.05)
            assert page is not None and page.total == len(image) and 0 < (page.done or 0) <= half
            resume.set()
            async with await upload as response:
                assert response.status == 200
        assert await scraper.read(HOST, OWNER) == ProgressPage(100.0, len(image), len(image))
        assert await scraper.read(HOST, "another-owner") == ProgressPage(None, None, None)
    finally:
        await server.stop()
