"""The resumable chunk protocol against a real upload server: uploads cut at random offsets resume and
end byte-identical, re-sending less than one chunk per interruption; offsets, failures, retries,
cancellation and abandoned sessions behave as documented in `importer.uploadserver.resumable`."""

from __future__ import annotations

import asyncio
import json
import random
import ssl

import pytest

from tests.support.catalog import ImageSet
from tests.upload.chunks import ChunkUpload
from tests.upload.conftest import StartServer
from tests.upload.support import raw_request, sha256_prefix

MiB = 1 << 20


@pytest.mark.parametrize(("name", "chunk", "cuts"), [
    ("disk.qcow2.gz", 256 * 1024, 6),
    ("disk.raw", 8 * MiB, 5),
    ("cdrom.iso.xz", 16 * 1024, 4),
])
async def test_upload_cut_at_random_offsets_resumes_byte_identical(
        name: str, chunk: int, cuts: int, images: ImageSet, upload_server: StartServer, mtls: ssl.SSLContext) -> None:
    server = await upload_server()
    data = images.path(name).read_bytes()
    rng = random.Random(f"{name}-cuts")
    client = ChunkUpload(server.port, mtls, data, chunk)
    response = await client.run(rng.sample(range(1, len(data)), cuts))
    assert response.status == 200, response
    assert json.loads(response.body)["phase"] in ("Processing", "Succeeded")
    assert len(client.resent) == cuts
    assert all(0 <= resent < chunk for resent in client.resent), client.resent
    assert client.sent <= len(data) + sum(client.resent) + cuts * chunk
    result = await server.result()
    assert result.exit_code == 0
    assert sha256_prefix(server.disk) == images[name].content_sha256


async def test_offsets_are_checked_and_resends_are_idempotent(upload_server: StartServer, mtls: ssl.SSLContext,
                                                               images: ImageSet) -> None:
    server = await upload_server()
    data = images.path("disk.qcow2").read_bytes()
    client = ChunkUpload(server.port, mtls, data, MiB)
    ahead = await client.put(MiB)
    assert ahead is not None and ahead.status == 409 and ahead.headers["x-upload-offset"] == "0"
    first = await client.put(0)
    assert first is not None and first.status == 200 and first.headers["x-upload-offset"] == str(MiB)
    again = await client.put(0)  # already consumed: acknowledged without feeding anything
    assert again is not None and again.status == 200 and again.headers["x-upload-offset"] == str(MiB)
    overlap = await raw_request(server.port, mtls, "PUT", f"/v1beta1/upload-chunk?offset={MiB // 2}",
                                body=data[MiB // 2:MiB + 1000])
    assert overlap is not None and overlap.status == 200 and overlap.headers["x-upload-offset"] == str(MiB + 1000)
    no_offset = await raw_request(server.port, mtls, "PUT", "/v1beta1/upload-chunk", body=b"")
    assert no_offset is not None and no_offset.status == 400
    busy = await raw_request(server.port, mtls, "POST", "/v1beta1/upload", body=data)
    assert busy is not None and busy.status == 503
    client.chunk = len(data)
    done = await client.put(MiB + 1000, final=True)
    assert done is not None and done.status == 200, done
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256


async def test_refused_image_ends_the_session_and_a_retry_starts_over(
        upload_server: StartServer, mtls: ssl.SSLContext, images: ImageSet) -> None:
    server = await upload_server({"UPLOAD_IMAGE_SIZE": "8Mi"})
    big = images.path("disk.raw").read_bytes()
    failing = ChunkUpload(server.port, mtls, big, 4 * MiB)
    response = await failing.run()
    assert response.status == 400
    assert b"larger than the reported available storage" in response.body
    assert response.headers["x-upload-offset"] == "0"
    later = await failing.put(12 * MiB)
    assert later is not None and later.status == 400  # the failed session reports its failure
    assert server.written() == []
    small = bytes(range(256)) * 4096
    retry = ChunkUpload(server.port, mtls, small, 256 * 1024)
    assert (await retry.run()).status == 200
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk, len(small)) == sha256_prefix_bytes(small)


def sha256_prefix_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def test_delete_abandons_the_upload(upload_server: StartServer, mtls: ssl.SSLContext,
                                          images: ImageSet) -> None:
    server = await upload_server()
    client = ChunkUpload(server.port, mtls, images.path("disk.qcow2").read_bytes(), MiB)
    assert (await client.put(0)) is not None
    deleted = await raw_request(server.port, mtls, "DELETE", "/v1beta1/upload-chunk")
    assert deleted is not None and deleted.status == 200
    assert json.loads(deleted.body)["phase"] == "Idle"
    assert server.written() == []
    assert (await client.run()).status == 200
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256


async def test_abandoned_session_times_out_and_frees_the_server(upload_server: StartServer, mtls: ssl.SSLContext,
                                                                 images: ImageSet) -> None:
    server = await upload_server({"CDI_UPLOAD_RESUME_TIMEOUT": "0.5"})
    client = ChunkUpload(server.port, mtls, images.path("disk.qcow2").read_bytes(), MiB)
    assert (await client.put(0)) is not None
    await asyncio.sleep(1.0)
    status = await raw_request(server.port, mtls, "GET", "/v1beta1/upload-chunk")
    assert status is not None
    state = json.loads(status.body)
    assert state["phase"] == "Failed" and "no chunk arrived" in state["message"], state
    assert server.written() == []
    assert (await client.run()).status == 200
