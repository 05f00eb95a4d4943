"""The upload proxy in front of real upload servers, both over real TLS: `curl` with a token uploads
every format as upstream's docs show; forged, expired and misdirected tokens are refused before
anything reaches an upload server; CORS, readiness waits, archive rewrites and credential rotation."""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import ssl
import time
from pathlib import Path

import aiohttp
import pytest

from cdi.tokens import generate_signing_key
from tests.support.catalog import ImageSet
from tests.support.tls import TestPKI, make_pki
from tests.upload.conftest import ProxyHandle, StartServer
from tests.upload.support import sha256_prefix
from uploadproxy.resolver import UploadTarget, already_finished, invalid_content_type, not_upload_target, pod_not_ready

CURL_FORMATS = ["disk.raw", "disk.qcow2", "disk.raw.gz", "disk.qcow2.xz", "cdrom.iso"]


async def curl(*args: str) -> tuple[int, str]:
    """Run the real curl binary; returns (HTTP status, body)."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    body, _, code = out.decode(errors="replace").rpartition("\n")
    return int(code), body


async def request(proxy: ProxyHandle, pki: TestPKI, method: str, path: str, *, headers: dict[str, str] | None = None,
                  data: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    async with aiohttp.ClientSession() as session, session.request(
            method, proxy.url + path, headers=headers, data=io.BytesIO(data) if data else None, ssl=context) as r:
        return r.status, await r.text(), dict(r.headers)


@pytest.mark.parametrize("name", CURL_FORMATS)
async def test_curl_uploads_through_the_proxy(name: str, proxy: ProxyHandle, upload_server: StartServer,
                                              pki: TestPKI, images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    token = proxy.token("default", "disk")
    status, body = await curl("--cacert", str(pki.ca_cert), "-H", f"Authorization: Bearer {token}",
                              "--data-binary", f"@{images.path(name)}", f"{proxy.url}/v1beta1/upload")
    assert (status, body) == (200, "")
    assert (await server.result()).exit_code == 0
    assert sha256_prefix(server.disk) == images[name].content_sha256


@pytest.mark.parametrize(("case", "status", "text"), [
    ("forged", 401, "signature is invalid"),
    ("expired", 401, "expired"),
    ("not yet valid", 401, "not valid yet"),
    ("wrong pvc", 401, "issued for PVC default/other, not default/disk"),
    ("clone token", 401, "not an upload token"),
    ("no header", 400, "missing Authorization header"),
    ("basic auth", 400, "malformed Authorization header"),
])
async def test_bad_tokens_are_refused_and_nothing_is_written(
        case: str, status: int, text: str, proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI,
        images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    headers = {
        "forged": proxy.auth(key=generate_signing_key(time.time())),
        "expired": proxy.auth(now=time.time() - 311),
        "not yet valid": proxy.auth(now=time.time() + 60),
        "wrong pvc": {**proxy.auth(pvc="other"), "X-Cdi-Upload-Target": "default/disk"},
        "clone token": proxy.auth(operation="Clone"),
        "no header": {},
        "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
    }[case]
    got, body, response_headers = await request(proxy, pki, "POST", "/v1beta1/upload", headers=headers,
                                                data=images.path("disk.qcow2").read_bytes())
    assert got == status and text in body, body
    assert response_headers["Access-Control-Allow-Origin"] == "*"
    assert proxy.resolver.calls == 0
    assert server.written() == []


async def test_expired_token_within_leeway_is_accepted(proxy: ProxyHandle, upload_server: StartServer,
                                                       pki: TestPKI, images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/disk"] = UploadTarget(server.url)
    status, _, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(now=time.time() - 305),
                                 data=images.path("disk.qcow2").read_bytes())
    assert status == 200


async def test_cors_preflight_is_answered_by_the_proxy(proxy: ProxyHandle, pki: TestPKI) -> None:
    status, _, headers = await request(proxy, pki, "OPTIONS", "/v1beta1/upload", headers={
        "Origin": "https://console.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST"
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert proxy.resolver.calls == 0
    status, body, headers = await request(proxy, pki, "GET", "/healthz")
    assert (status, body, headers["Access-Control-Allow-Origin"]) == (200, "OK", "*")
    status, _, _ = await request(proxy, pki, "POST", "/v1beta1/upload-archive", headers=proxy.auth())
    assert status == 404  # archive endpoints are reached only through the content-type rewrite


async def test_readiness_is_awaited_then_given_up(proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI,
                                                  images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/disk"] = [pod_not_ready("disk"), pod_not_ready("disk"), UploadTarget(server.url)]
    status, _, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(),
                                 data=images.path("disk.qcow2").read_bytes())
    assert status == 200 and proxy.resolver.calls == 3
    proxy.resolver.table["default/late"] = [pod_not_ready("late")]
    started = time.monotonic()
    status, body, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(pvc="late"), data=b"x")
    assert (status, body) == (503, "upload server for PVC late is not ready")
    assert 1.3 < time.monotonic() - started < 5
    proxy.resolver.table["default/evil"] = invalid_content_type("<script>alert(1)</script>", "x")
    status, body, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(pvc="evil"), data=b"x")
    assert status == 503 and "&lt;script&gt;" in body and "<script>" not in body
    proxy.resolver.table["default/plain"] = not_upload_target("plain")
    status, body, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(pvc="plain"), data=b"x")
    assert (status, body) == (503, "PVC plain is not an upload target")


async def test_an_upload_that_already_succeeded_is_told_apart(proxy: ProxyHandle, pki: TestPKI) -> None:
    """The resumable endpoint answers 409 with `X-Upload-Phase: Succeeded` (the client knows it is done, not
    down); upstream's endpoints keep upstream's 503, with the header too."""
    proxy.resolver.table["default/done"] = already_finished("done")
    started = time.monotonic()
    status, body, headers = await request(proxy, pki, "GET", "/v1beta1/upload-chunk", headers=proxy.auth(pvc="done"))
    assert (status, body, headers.get("X-Upload-Phase")) == (
        409, "rejecting Upload Request for PVC done that already finished uploading", "Succeeded")
    assert time.monotonic() - started < 1  # at once: waiting cannot change it
    status, _, headers = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(pvc="done"), data=b"x")
    assert (status, headers.get("X-Upload-Phase")) == (503, "Succeeded")


async def test_a_server_not_yet_listening_is_retried(proxy: ProxyHandle, upload_server: StartServer, pki: TestPKI,
                                                     images: ImageSet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy.resolver.table["default/disk"] = UploadTarget(f"https://127.0.0.1:{port}")
    upload = asyncio.create_task(request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(),
                                         data=images.path("disk.qcow2").read_bytes()))
    await asyncio.sleep(0.4)
    server = await upload_server({"LISTEN_PORT": str(port)})
    status, _, _ = await upload
    assert status == 200
    assert sha256_prefix(server.disk) == images["disk.qcow2"].content_sha256
    proxy.resolver.table["default/gone"] = UploadTarget(f"https://127.0.0.1:{port + 1 if port < 65535 else 1}")
    status, body, _ = await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(pvc="gone"), data=b"x")
    assert status == 502 and body.startswith("error in upload-proxy:")


async def test_archive_pvcs_get_their_uploads_rewritten(proxy: ProxyHandle, upload_server: StartServer,
                                                        pki: TestPKI, images: ImageSet) -> None:
    server = await upload_server()
    proxy.resolver.table["default/files"] = UploadTarget(server.url, archive=True)
    status, _, _ = await request(proxy, pki, "POST", "/v1beta1/upload-async", headers=proxy.auth(pvc="files"),
                                 data=images.path("files.tar").read_bytes())
    assert status == 200
    for member, content in images.archive_members.items():
        assert (server.data / member).read_bytes() == content


async def test_rotated_token_keys_and_certificates_are_picked_up(proxy: ProxyHandle, pki: TestPKI,
                                                                 tmp_path: Path) -> None:
    proxy.resolver.table["default/disk"] = not_upload_target("disk")  # 503 means the token was accepted
    old_key = proxy.ring.current
    rotated = proxy.ring.rotate(generate_signing_key(time.time()))
    assert proxy.files.public_keys is not None
    proxy.files.public_keys.write_bytes(rotated.public_bundle_pem())
    new_only = {"Authorization": f"Bearer {proxy.token('default', 'disk', key=rotated.current)}"}
    assert (await request(proxy, pki, "POST", "/v1beta1/upload", headers=new_only))[0] == 401
    proxy.server.credentials.refresh()
    assert (await request(proxy, pki, "POST", "/v1beta1/upload", headers=new_only))[0] == 503
    assert (await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(key=old_key)))[0] == 503
    twice = rotated.rotate(generate_signing_key(time.time()))
    proxy.files.public_keys.write_bytes(twice.public_bundle_pem())
    proxy.server.credentials.refresh()
    assert (await request(proxy, pki, "POST", "/v1beta1/upload", headers=proxy.auth(key=old_key)))[0] == 401

    other = make_pki(tmp_path / "other-pki")
    assert proxy.files.server_cert is not None and proxy.files.server_key is not None
    shutil.copy(other.server_cert, proxy.files.server_cert)
    shutil.copy(other.server_key, proxy.files.server_key)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await request(proxy, other, "GET", "/healthz")
    proxy.server.credentials.refresh()
    assert (await request(proxy, other, "GET", "/healthz"))[0] == 200
