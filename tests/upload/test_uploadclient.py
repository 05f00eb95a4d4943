"""The `cdi image-upload` client: chunks streamed from the file (never a chunk in memory), sized from the
measured rate within the server's maximum, and a whole upload through the real proxy and upload server."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cdi.cli.errors import CliError
from cdi.cli.uploadclient import (
    CHUNK_SECONDS,
    FIRST_CHUNK,
    MIN_CHUNK,
    AlreadyUploaded,
    ChunkSizer,
    FileSlice,
    ResumableUploader,
    UploadJob,
)
from tests.support.catalog import ImageSet
from tests.support.tls import TestPKI
from tests.upload.conftest import ProxyHandle, StartServer
from tests.upload.lost_reply import LostReplyRelay
from tests.upload.support import HOST, sha256_prefix
from uploadproxy.resolver import UploadTarget, already_finished, pod_not_ready

MiB = 1 << 20


def test_first_chunk_is_small_then_about_two_seconds_of_the_measured_rate() -> None:
    sizer = ChunkSizer(None, server_max=1 << 30)
    assert sizer.next() == FIRST_CHUNK
    sizer.observe(100 * MiB, 1.0)
    assert sizer.next() == int(100 * MiB * CHUNK_SECONDS)
    sizer.observe(10 * MiB, 1.0)  # the link slowed down: chunks shrink with it (smoothed)
    assert sizer.next() == int(55 * MiB * CHUNK_SECONDS)


def test_chunks_stay_within_the_server_maximum_and_above_the_minimum() -> None:
    sizer = ChunkSizer(None, server_max=64 * MiB)
    sizer.observe(1000 * MiB, 1.0)
    assert sizer.next() == 64 * MiB
    slow = ChunkSizer(None)
    slow.observe(1000, 1.0)
    assert slow.next() == MIN_CHUNK


def test_a_forced_chunk_size_is_kept_but_capped_by_the_server() -> None:
    sizer = ChunkSizer(4 * MiB, server_max=1 << 30)
    sizer.observe(1000 * MiB, 1.0)
    assert sizer.next() == 4 * MiB
    assert ChunkSizer(256 * MiB, server_max=64 * MiB).next() == 64 * MiB


async def receiving_server() -> tuple[web.AppRunner, int, list[tuple[int | None, bytes]]]:
    received: list[tuple[int | None, bytes]] = []

    async def put(request: web.Request) -> web.Response:
        received.append((request.content_length, await request.read()))
        return web.Response()

    app = web.Application(client_max_size=64 * MiB)
    app.router.add_put("/", put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    return runner, runner.addresses[0][1], received


async def test_a_file_slice_sends_exactly_its_range_with_a_content_length(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * MiB + 123)
    image = tmp_path / "image"
    image.write_bytes(data)
    runner, port, received = await receiving_server()
    try:
        with image.open("rb") as f:
            async with aiohttp.ClientSession() as session:
                for offset, length in ((0, 1), (5, 2 * MiB + 7), (3 * MiB, 123)):
                    async with session.put(f"http://{HOST}:{port}/", data=FileSlice(f.fileno(), offset, length)):
                        pass
    finally:
        await runner.cleanup()
    assert received == [(1, data[:1]), (2 * MiB + 7, data[5:5 + 2 * MiB + 7]), (123, data[3 * MiB:])]


async def test_a_file_that_shrank_under_the_upload_fails_the_request(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.write_bytes(bytes(MiB))
    runner, port, received = await receiving_server()
    try:
        with image.open("rb") as f:
            async with aiohttp.ClientSession() as session:
                with pytest.raises((aiohttp.ClientError, OSError)):
                    async with session.put(f"http://{HOST}:{port}/", data=FileSlice(f.fileno(), 0, 2 * MiB)):
                        pass
    finally:
        await runner.cleanup()
    assert received == []


async def test_upload_through_proxy_streams_from_the_file_with_growing_chunks(
        proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI, tmp_path: Path) -> None:
    """48 MiB of random raw image with chunks allowed up to 1 GiB: the chunks grow past the first one,
    the disk is byte-identical, and the process never held anything near a chunk in memory (the old
    client read each chunk into one bytes object)."""
    image = tmp_path / "upload.raw"
    rng = random.Random(7)
    with image.open("wb") as f:
        for _ in range(48):
            f.write(rng.randbytes(MiB))
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    acknowledged: list[int] = []

    async def token() -> str:
        return proxy.token("default", "disk")

    uploader = ResumableUploader(UploadJob(proxy.url, "default", "disk", image, context), token,
                                 lambda done, _total: acknowledged.append(done))
    tracemalloc.start()
    try:
        await uploader.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk, image.stat().st_size) == sha256_prefix(image)
    assert acknowledged[0] == FIRST_CHUNK and acknowledged[-1] == 48 * MiB
    assert len(acknowledged) >= 2 and max(b - a for a, b in zip([0, *acknowledged], acknowledged, strict=False)) > FIRST_CHUNK
    assert peak < 24 * MiB, f"Python allocations peaked at {peak / MiB:.1f} MiB during a 48 MiB upload"
    assert uploader.transfer_seconds > 0 and uploader.interruptions == 0


@pytest.mark.parametrize("name", ["disk.qcow2", "disk-compressed.qcow2", "disk.qcow2.gz", "disk.raw.xz"])
async def test_uploads_need_no_scratch_space(name: str, proxy: ProxyHandle, upload_server: StartServer,
                                            pki: TestPKI, images: ImageSet) -> None:
    """qcow2 (compressed clusters too) and compressed raw stream onto the volume: the upload server has
    no scratch directory at all, and the disk is byte-identical to qemu-img's conversion."""
    server = await upload_server()
    server.scratch.rmdir()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    async def token() -> str:
        return proxy.token("default", "disk")

    uploader = ResumableUploader(UploadJob(proxy.url, "default", "disk", images.path(name), context), token,
                                 lambda _done, _total: None)
    await uploader.run()
    assert (await server.result()).exit_code == 0
    assert not server.scratch.exists()
    assert sha256_prefix(server.disk, images.virtual_size) == images.reference_sha256


async def test_an_image_that_changes_size_during_the_upload_fails_at_once(
        proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI, tmp_path: Path) -> None:
    image = tmp_path / "growing.raw"
    image.write_bytes(bytes(24 * MiB))
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    async def token() -> str:
        return proxy.token("default", "disk")

    def grow(done: int, _total: int) -> None:
        if done < 24 * MiB:
            with image.open("ab") as f:
                f.write(b"late")

    uploader = ResumableUploader(UploadJob(proxy.url, "default", "disk", image, context, 8 * MiB), token, grow)
    with pytest.raises(CliError, match="changed size during the upload"):
        await uploader.run()
    assert uploader.interruptions == 0


@pytest.mark.parametrize("ask_the_claim", [True, False], ids=["phase-asked", "proxy-409"])
async def test_a_lost_reply_to_the_final_chunk_still_ends_in_success(
        ask_the_claim: bool, proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI, tmp_path: Path) -> None:
    """The final chunk reaches the server, the server finishes and goes away, but the reply never reaches
    the client: the client finds out the upload landed within seconds, instead of retrying for minutes
    and failing — from the claim's phase while the proxy can only say the server is not there (503), or
    from the proxy's 409 `X-Upload-Phase: Succeeded` once it knows the upload finished."""
    image = tmp_path / "upload.raw"
    image.write_bytes(random.Random(3).randbytes(3 * MiB))
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)

    async def server_finishes_and_goes_away() -> None:
        assert (await server.result()).exit_code == 0
        proxy.resolver.table["default/disk"] = pod_not_ready("disk") if ask_the_claim else already_finished("disk")

    relay = LostReplyRelay(HOST, proxy.server.port, threshold=3 * MiB, before_drop=server_finishes_and_goes_away)
    await relay.start()
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    async def token() -> str:
        return proxy.token("default", "disk")

    async def succeeded() -> bool:
        return ask_the_claim and server.disk.exists()

    job = UploadJob(f"https://{HOST}:{relay.port}", "default", "disk", image, context)
    uploader = ResumableUploader(job, token, lambda _done, _total: None, succeeded)
    started = time.monotonic()
    try:
        await asyncio.wait_for(uploader.run(), 20)
    finally:
        await relay.close()
    assert relay.dropped == 1 and uploader.final_sent
    assert time.monotonic() - started < 10
    assert sha256_prefix(server.disk) == sha256_prefix(image)


async def test_a_target_complete_before_the_upload_is_reported_as_such(proxy: ProxyHandle, pki: TestPKI,
                                                                      tmp_path: Path) -> None:
    image = tmp_path / "upload.raw"
    image.write_bytes(bytes(MiB))
    proxy.resolver.table["default/disk"] = already_finished("disk")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    async def token() -> str:
        return proxy.token("default", "disk")

    uploader = ResumableUploader(UploadJob(proxy.url, "default", "disk", image, context), token,
                                 lambda _done, _total: None)
    with pytest.raises(AlreadyUploaded, match="already finished uploading"):
        await asyncio.wait_for(uploader.run(), 10)
    assert not uploader.final_sent
