"""The upload server alone, over real mutual TLS on loopback with real qemu-img: every format lands
byte-identical, upstream's gates and status codes hold, and refused uploads leave nothing behind."""

from __future__ import annotations

import asyncio
import io
import ssl
from pathlib import Path

import aiohttp
import pytest

from cdi.contracts.termination import TerminationMessage
from tests.support.catalog import ImageSet
from tests.support.tls import ClientCert, TestPKI
from tests.upload.conftest import StartServer
from tests.upload.support import client_context, raw_request, sha256_prefix

FORMATS = ["disk.raw", "disk.qcow2", "disk.raw.gz", "disk.raw.xz", "disk.qcow2.xz", "cdrom.iso", "cdrom.iso.gz",
           "disk.vmdk"]


async def post(url: str, context: ssl.SSLContext | None, body: bytes | Path | aiohttp.FormData,
               ) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        data = io.BytesIO(body.read_bytes() if isinstance(body, Path) else body) if not isinstance(
            body, aiohttp.FormData) else body
        async with session.post(url, data=data, ssl=context) as response:
            return response.status, await response.text()


@pytest.mark.parametrize("name", FORMATS)
async def test_sync_upload_writes_the_image(name: str, images: ImageSet, upload_server: StartServer,
                                            mtls: ssl.SSLContext) -> None:
    server = await upload_server()
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, images.path(name))
    assert (status, text) == (200, "")
    result = await server.result()
    assert result.exit_code == 0
    assert result.message == TerminationMessage(message="Upload Complete", preallocation_applied=False)
    image = images[name]
    assert server.disk.stat().st_size == image.virtual_size
    assert sha256_prefix(server.disk) == image.content_sha256
    assert server.written() == ["disk.img"]


async def test_gates_and_status_codes(upload_server: StartServer, mtls: ssl.SSLContext, images: ImageSet) -> None:
    server = await upload_server()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/healthz", ssl=client_context_no_cert(mtls)) as response:
            assert (response.status, await response.text()) == (200, "OK")
        async with session.get(f"{server.url}/v1beta1/upload", ssl=mtls) as response:
            assert response.status == 404
        async with session.head(f"{server.url}/v1beta1/upload-async", ssl=mtls) as response:
            assert response.status == 200
        async with session.head(f"{server.url}/v1beta1/upload", ssl=mtls) as response:
            assert response.status == 404
    # An upload in progress (its body half sent) makes a second one 503.
    first = asyncio.create_task(_slow_upload(server.url, mtls, images.path("disk.raw").read_bytes()))
    await asyncio.sleep(0.3)
    status, _ = await post(f"{server.url}/v1alpha1/upload", mtls, b"x" * 4096)
    assert status == 503
    assert await first == 200
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, b"x" * 4096)
    assert status == 409, text
    assert sha256_prefix(server.disk) == images["disk.raw"].content_sha256


def client_context_no_cert(context: ssl.SSLContext) -> ssl.SSLContext:
    """Same trust, no client certificate (a readiness probe)."""
    bare = ssl.create_default_context()
    bare.load_verify_locations(cadata=context.get_ca_certs(binary_form=True)[0])
    return bare


async def _slow_upload(url: str, context: ssl.SSLContext, data: bytes) -> int:
    async def body() -> object:
        for start in range(0, len(data), 4 << 20):
            yield data[start:start + (4 << 20)]
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1beta1/upload", data=body(), ssl=context,
                                                                headers={"Content-Length": str(len(data))}) as r:
        return r.status


@pytest.mark.parametrize("cert", [None, "impostor"])
async def test_client_certificate_is_required(cert: str | None, pki: TestPKI, impostor_cert: ClientCert,
                                              upload_server: StartServer, images: ImageSet) -> None:
    server = await upload_server()
    context = client_context(pki, impostor_cert if cert else None)
    status, _ = await post(f"{server.url}/v1beta1/upload", context, images.path("disk.qcow2"))
    assert status == 401
    assert server.written() == []
    assert server.server._gate is not None and not server.server._gate.finished


async def test_too_large_is_refused_then_a_retry_succeeds(upload_server: StartServer, mtls: ssl.SSLContext,
                                                          images: ImageSet, tmp_path: Path) -> None:
    server = await upload_server({"UPLOAD_IMAGE_SIZE": "16Mi"})
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, images.path("disk.qcow2"))
    assert status == 400
    assert text.startswith("Saving stream failed: effective image size is larger than the reported available "
                           "storage")
    assert server.written() == []
    small = tmp_path / "small.raw"
    small.write_bytes(b"\x01" * (1 << 20))
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, small)
    assert (status, text) == (200, "")
    assert (await server.result()).exit_code == 0
    assert server.disk.stat().st_size == 16 << 20  # resized to the requested size, as an import would be
    assert sha256_prefix(server.disk, 1 << 20) == sha256_prefix(small)


async def test_unsafe_image_is_400_and_client_disconnect_is_retryable(
        upload_server: StartServer, mtls: ssl.SSLContext, images: ImageSet) -> None:
    server = await upload_server()
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, images.path("backing.qcow2"))
    assert status == 400 and "backing file" in text
    data = images.path("disk.raw").read_bytes()
    assert await raw_request(server.port, mtls, "POST", "/v1beta1/upload", body=data, cut_after=3 << 20) is None
    await asyncio.sleep(0.3)
    assert server.written() == []
    status, _ = await post(f"{server.url}/v1beta1/upload", mtls, images.path("disk.qcow2"))
    assert status == 200
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256


async def test_async_answers_after_validation(upload_server: StartServer, mtls: ssl.SSLContext,
                                              images: ImageSet) -> None:
    server = await upload_server()
    status, _ = await post(f"{server.url}/v1beta1/upload-async", mtls, images.path("disk.vdi"))
    assert status == 200
    result = await server.result()
    assert result.exit_code == 0 and result.message is not None and result.message.message == "Upload Complete"
    assert sha256_prefix(server.disk) == images["disk.vdi"].content_sha256


async def test_async_refusal_is_answered_in_the_request(upload_server: StartServer, mtls: ssl.SSLContext,
                                                        images: ImageSet) -> None:
    server = await upload_server()
    status, text = await post(f"{server.url}/v1beta1/upload-async", mtls, images.path("truncated.qcow2"))
    assert status == 400 and "truncated" in text
    assert server.written() == []


async def test_form_upload_and_missing_file_part(upload_server: StartServer, mtls: ssl.SSLContext,
                                                 images: ImageSet) -> None:
    server = await upload_server()
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("other", "ignored")
    status, text = await post(f"{server.url}/v1beta1/upload-form", mtls, form)
    assert status == 400 and "no part named 'file'" in text
    status, _ = await post(f"{server.url}/v1beta1/upload-form", mtls, b"not a form")
    assert status == 400
    form = aiohttp.FormData()
    form.add_field("note", "skipped")
    form.add_field("file", io.BytesIO(images.path("disk.qcow2").read_bytes()), filename="disk.qcow2")
    status, text = await post(f"{server.url}/v1beta1/upload-form-async", mtls, form)
    assert (status, text) == (200, "")
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256


async def test_archive_upload_extracts_files(upload_server: StartServer, mtls: ssl.SSLContext,
                                             images: ImageSet) -> None:
    server = await upload_server()
    status, _ = await post(f"{server.url}/v1beta1/upload-archive", mtls, images.path("files.tar.gz"))
    assert status == 200
    for member, content in images.archive_members.items():
        assert (server.data / member).read_bytes() == content


@pytest.mark.parametrize("compress", [False, True])
async def test_truncated_iso_is_refused(compress: bool, upload_server: StartServer, mtls: ssl.SSLContext,
                                        images: ImageSet) -> None:
    import gzip

    server = await upload_server()
    iso = images.path("cdrom.iso").read_bytes()
    body = iso[: len(iso) // 2]
    status, text = await post(f"{server.url}/v1beta1/upload", mtls, gzip.compress(body) if compress else body)
    assert status == 400
    assert f"ISO image is incomplete: its volume descriptor declares {len(iso)} bytes" in text
    assert server.written() == []


async def test_insecure_test_mode_serves_plain_http(upload_server: StartServer, images: ImageSet) -> None:
    server = await upload_server({"CDI_UPLOAD_INSECURE": "true", "TLS_CERT_FILE": "/nonexistent"})
    status, _ = await post(f"http://127.0.0.1:{server.port}/v1beta1/upload", None, images.path("disk.raw.gz"))
    assert status == 200
    assert sha256_prefix(server.disk) == images["disk.raw.gz"].content_sha256
