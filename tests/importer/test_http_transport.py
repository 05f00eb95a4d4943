"""The HTTP source against real servers: TLS with a custom CA, basic auth, redirects, status errors,
extra headers, checksums and streams cut short."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from cdi.sizing import usable_space
from tests.importer.conftest import Runner
from tests.support.catalog import ImageSet, sha256_file
from tests.support.nginx import Location, NginxServer
from tests.support.tls import TestPKI

QCOW2_GZ = "disk.qcow2.gz"


def http(url: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, **extra}


def assert_imported(run, images: ImageSet) -> None:  # type: ignore[no-untyped-def]
    assert run.returncode == 0, run.log
    assert run.message.message == "Import Complete"
    assert run.disk_sha256() == images.reference_sha256


@pytest.fixture
def ca_dir(tmp_path: Path, pki: TestPKI) -> Path:
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(pki.ca_cert, directory / "weird-name.pem")  # any file name works, as upstream's Go client
    return directory


def test_https_with_custom_ca(nginx: NginxServer, images: ImageSet, ca_dir: Path, run_importer: Runner) -> None:
    """The issue's acceptance case: HTTPS, gzip-compressed qcow2, sized to the usable space."""
    run = run_importer(http(nginx.url(QCOW2_GZ, tls=True), IMPORTER_CERT_DIR=str(ca_dir), IMPORTER_IMAGE_SIZE="1Gi",
                            FILESYSTEM_OVERHEAD="0.06"))
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete"
    assert run.disk.stat().st_size == usable_space(Decimal("0.06"), 1 << 30)
    assert run.disk_sha256(images.virtual_size) == images.reference_sha256


def test_proxy_from_the_environment(recorder: RecordingServer, images: ImageSet, run_importer: Runner) -> None:
    run = run_importer(http("http://disks.example.invalid/image", http_proxy=f"http://127.0.0.1:{recorder.port}"))
    assert_imported(run, images)
    assert recorder.requests[0]["Host"] == "disks.example.invalid"


def test_https_without_the_ca_is_refused(nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(QCOW2_GZ, tls=True)))
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message.startswith("Unable to connect to http data source: HTTP request errored")
    assert "CERTIFICATE_VERIFY_FAILED" in run.message.message
    assert not run.disk.exists()


def test_https_insecure_skip_verify(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ, tls=True), INSECURE_TLS="true")), images)


def test_basic_auth(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    creds = {"IMPORTER_ACCESS_KEY_ID": "admin", "IMPORTER_SECRET_KEY": "password"}
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ, auth=True), **creds)), images)
    denied = run_importer(http(nginx.url(QCOW2_GZ, auth=True), IMPORTER_ACCESS_KEY_ID="admin",
                               IMPORTER_SECRET_KEY="wrong"))
    assert denied.returncode == 1
    assert denied.message is not None and "got 401" in denied.message.message


@pytest.mark.parametrize("location", [Location.REDIRECT, Location.MOVED])
def test_redirects_are_followed(location: Location, nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ, location=location))), images)


def test_auth_survives_a_redirect_to_another_port(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    creds = {"IMPORTER_ACCESS_KEY_ID": "admin", "IMPORTER_SECRET_KEY": "password"}
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ, location=Location.TO_AUTH), **creds)), images)


@pytest.mark.parametrize(("location", "status"), [(Location.NOT_FOUND, "404 Not Found"),
                                                  (Location.UNAVAILABLE, "503 Service Temporarily Unavailable")])
def test_error_status_is_retryable_with_upstreams_message(location: Location, status: str, nginx: NginxServer,
                                                          run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(QCOW2_GZ, location=location)))
    assert run.returncode == 1
    assert run.message is not None
    code = status.split()[0]
    assert run.message.message == (f"Unable to connect to http data source: expected status code 200, got {code}. "
                                   f"Status: {status}")
    assert (run.message.reason, run.message.retryable) == ("ImportSourceUnavailable", True)


def test_unresolvable_host(run_importer: Runner) -> None:
    run = run_importer(http("http://no-such-host.invalid/disk.img"))
    assert run.returncode == 1
    assert run.message is not None and "HTTP request errored" in run.message.message


@pytest.mark.parametrize("location", [Location.CHUNKED, Location.NO_RANGES, Location.HTML])
def test_awkward_servers_still_work(location: Location, nginx: NginxServer, images: ImageSet,
                                    run_importer: Runner) -> None:
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ, location=location))), images)


def test_checksum_of_the_wire_bytes(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    digest = sha256_file(images.path(QCOW2_GZ))
    assert_imported(run_importer(http(nginx.url(QCOW2_GZ), IMPORTER_CHECKSUM=f"sha256:{digest}")), images)


@pytest.mark.parametrize("name", ["disk.raw.xz", QCOW2_GZ])
def test_checksum_mismatch_is_fatal_and_leaves_nothing(name: str, nginx: NginxServer, images: ImageSet,
                                                       run_importer: Runner) -> None:
    wrong = "0" * 64
    run = run_importer(http(nginx.url(name), IMPORTER_CHECKSUM=f"sha256:{wrong}"))
    assert run.returncode == 0  # upstream's contract: the JSON message tells the controller not to retry
    assert run.message is not None
    assert run.message.message.startswith(f"Unable to process data: checksum mismatch: expected sha256:{wrong}, "
                                          f"calculated sha256:{sha256_file(images.path(name))}")
    assert (run.message.reason, run.message.retryable) == ("ChecksumError", False)
    assert list(run.data.iterdir()) == []
    assert list(run.scratch.iterdir()) == []


def test_invalid_checksum_spec(nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(QCOW2_GZ), IMPORTER_CHECKSUM="sha256:abc"))
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message == "invalid checksum: invalid sha256 hash length: expected 64 hex characters, got 3"


class RecordingServer:
    """A tiny aiohttp server in a thread: records request headers, redirects, and can cut a body short."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"path": request.path, **request.headers})
        if request.path == "/hop":
            raise web.HTTPFound("/image")
        if request.path == "/cut":
            response = web.StreamResponse(headers={"Content-Length": str(len(self.body))})
            await response.prepare(request)
            await response.write(self.body[: len(self.body) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(body=self.body)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def recorder(images: ImageSet) -> Iterator[RecordingServer]:
    with RecordingServer(images.path(QCOW2_GZ).read_bytes()) as server:
        yield server


def test_extra_headers_from_env_and_secret_files_are_sent_on_every_hop(
        recorder: RecordingServer, tmp_path: Path, images: ImageSet, run_importer: Runner) -> None:
    secret_dir = tmp_path / "extraheaders"
    (secret_dir / "0").mkdir(parents=True)
    (secret_dir / "0" / "secretHeader").write_text("X-Secret: s3cr3t\n")
    (secret_dir / ".hidden").mkdir()
    (secret_dir / ".hidden" / "x").write_text("X-Hidden: no\n")
    run = run_importer(http(f"http://127.0.0.1:{recorder.port}/hop", IMPORTER_EXTRA_HEADER_0="X-Custom: 1",
                            CDI_EXTRA_HEADERS_DIR=str(secret_dir), IMPORTER_ACCESS_KEY_ID="u",
                            IMPORTER_SECRET_KEY="p"))
    assert_imported(run, images)
    assert [r["path"] for r in recorder.requests] == ["/hop", "/image"]
    for request in recorder.requests:
        assert request["X-Custom"] == "1"
        assert request["X-Secret"] == "s3cr3t"
        assert request["Authorization"].startswith("Basic ")
        assert "X-Hidden" not in request
    assert "s3cr3t" not in run.log


def test_a_stream_cut_short_is_retryable_and_leaves_no_disk(recorder: RecordingServer, run_importer: Runner) -> None:
    run = run_importer(http(f"http://127.0.0.1:{recorder.port}/cut"))
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message.startswith("Unable to process data: failed to pull image")
    assert (run.message.reason, run.message.retryable) == ("ImagePullFailed", True)
    assert list(run.data.iterdir()) == []
