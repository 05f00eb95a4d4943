"""The `cdi-uploadserver` entrypoint as a pod runs it: the termination message and exit code for a
success, a passed deadline and a bad configuration; and, in-process with a qemu-img that fails to
convert, upstream's exit 1 when async processing fails after its 200."""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from cdi.contracts.termination import TerminationMessage
from importer.errors import ToolFailure
from importer.qemu import QemuImg
from importer.uploadserver.config import load_config
from importer.uploadserver.main import UploadServer
from tests.support.catalog import ImageSet
from tests.support.tls import TestPKI
from tests.upload.support import HOST, sha256_prefix, upload_env


def entrypoint(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the console script; its log goes to `server.log` beside the data directory."""
    with (Path(env["CDI_DATA_PATH"]).parent / "server.log").open("wb") as log:
        return subprocess.Popen([str(Path(sys.executable).with_name("cdi-uploadserver"))],
                                env={"PATH": os.environ["PATH"], **env}, stdout=subprocess.DEVNULL, stderr=log)


def volumes(tmp_path: Path) -> tuple[Path, Path]:
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    return data, scratch


def termination(tmp_path: Path) -> TerminationMessage:
    return TerminationMessage.parse((tmp_path / "termination-log").read_text())


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def test_success_writes_upstreams_message_and_exits_0(tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext,
                                                             images: ImageSet) -> None:
    data, scratch = volumes(tmp_path)
    port = free_port()
    process = entrypoint(upload_env(pki, data, scratch, LISTEN_PORT=str(port)))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"https://{HOST}:{port}/healthz", ssl=mtls) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
            async with session.post(f"https://{HOST}:{port}/v1beta1/upload", ssl=mtls,
                                    data=io.BytesIO(images.path("disk.qcow2").read_bytes())) as response:
                assert response.status == 200
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
        process.wait()
    assert code == 0
    assert (tmp_path / "termination-log").read_text() == '{"preallocationApplied":false,"message":"Upload Complete"}'
    assert sha256_prefix(data / "disk.img") == images["disk.qcow2"].content_sha256


def test_deadline_passed_exits_0(tmp_path: Path, pki: TestPKI) -> None:
    data, scratch = volumes(tmp_path)
    process = entrypoint(upload_env(pki, data, scratch, DEADLINE="2020-01-01T00:00:00Z"))
    assert process.wait(30) == 0
    assert termination(tmp_path) == TerminationMessage(message="Deadline Passed", deadline_passed=True)


def test_bad_tls_configuration_exits_1(tmp_path: Path, pki: TestPKI) -> None:
    data, scratch = volumes(tmp_path)
    process = entrypoint(upload_env(pki, data, scratch, TLS_CERT_FILE=str(tmp_path / "missing.crt")))
    assert process.wait(30) == 1
    message = termination(tmp_path)
    assert message.message.startswith("invalid TLS config") and message.reason == "InvalidConfiguration"


class FailingConvert(QemuImg):
    async def convert(self, src: str, fmt: str, dst: str, *, cache_mode: str, preallocate: bool,
                      existing_target: bool, on_progress: Callable[[float], None]) -> None:
        await asyncio.sleep(0.2)
        raise ToolFailure("could not convert image to raw: simulated failure")


async def test_async_failure_after_its_200_is_fatal(tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext,
                                                    images: ImageSet) -> None:
    data, scratch = volumes(tmp_path)
    server = UploadServer(load_config(upload_env(pki, data, scratch)), qemu=FailingConvert())
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"https://{HOST}:{port}/v1beta1/upload-async", ssl=mtls,
                data=io.BytesIO(images.path("disk.vdi").read_bytes())) as response:
            assert response.status == 200
        result = await asyncio.wait_for(server.wait(), 30)
    finally:
        await server.stop()
    assert result.exit_code == 1
    assert result.message == TerminationMessage(
        message="Unable to process data: could not convert image to raw: simulated failure", reason="ToolFailed",
        retryable=True)
    assert list(data.iterdir()) == []
