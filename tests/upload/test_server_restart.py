"""An upload server killed (SIGKILL) in the middle of a resumable upload, and started again on the same
volume: the new server continues at the last acknowledged chunk (raw) or from the last synced gzip
member, xz stream or zstd frame boundary, the real `cdi image-upload` client (`ResumableUploader`) rides through the restart
(connection refused while no server listens), and the disk is byte-identical to the image. qcow2
uploads: `test_qcow2_server_restart`."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import lzma
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from cdi.cli.uploadclient import ResumableUploader, UploadJob
from cdi.contracts.termination import TerminationMessage
from tests.support.tls import TestPKI
from tests.upload.support import HOST, sha256_prefix, upload_env
from tests.upload.test_uploadserver_process import free_port, volumes

CHUNK = 1 << 20
RESUMED = re.compile(r"Resumed the upload after an upload-server restart at byte (\d+)")


def token() -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3600}).encode()).decode().rstrip("=")
    return f"e30.{claims}.sig"


async def tokens() -> str:
    return token()


class Server:
    """One upload-server process after another on the same volume and port."""

    def __init__(self, tmp_path: Path, pki: TestPKI, device: Path | None = None) -> None:
        self.root = tmp_path
        directory, self.scratch = volumes(tmp_path)
        self.port = free_port()
        self.env = upload_env(pki, directory, self.scratch, LISTEN_PORT=str(self.port))
        if device is not None:
            self.env["CDI_DATA_PATH"] = str(device)
        self.data = device or directory
        self.logs: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.root / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as sink:
            self.process = subprocess.Popen([str(Path(sys.executable).with_name("cdi-uploadserver"))],
                                            env={"PATH": os.environ["PATH"], **self.env}, stdout=subprocess.DEVNULL,
                                            stderr=sink)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def log(self, index: int) -> str:
        return self.logs[index].read_text()

    def termination(self) -> TerminationMessage:
        return TerminationMessage.parse((self.root / "termination-log").read_text())


async def upload_with_kill(server: Server, image: Path, mtls: ssl.SSLContext, kill_at: float,
                           between: Callable[[], None] | None = None) -> tuple[int, int]:
    """Upload `image` with the real client, SIGKILL the server once `kill_at` of it was acknowledged and
    start a new one (after `between`, if given); returns (the last offset acknowledged before the kill,
    the server's exit code)."""
    size = image.stat().st_size
    acknowledged: list[int] = []
    reached = asyncio.Event()

    def progress(offset: int, total: int) -> None:
        acknowledged.append(offset)
        if offset >= kill_at * total:
            reached.set()

    job = UploadJob(f"https://{HOST}:{server.port}", "default", "disk", image, mtls, chunk_size=CHUNK)
    uploader = ResumableUploader(job, tokens, progress)
    server.start()
    client = asyncio.create_task(uploader.run())
    waiter = asyncio.create_task(reached.wait())
    await asyncio.wait({client, waiter}, return_when=asyncio.FIRST_COMPLETED)
    assert not client.done(), "the upload finished before the kill; make the image larger"
    server.kill()
    before = max(acknowledged)
    assert before < size
    await asyncio.sleep(1.0)  # the client meets a refused connection and retries
    if between is not None:
        between()
    server.start()
    await asyncio.wait_for(client, 120)
    assert server.process is not None
    code = await asyncio.to_thread(server.process.wait, 60)
    assert uploader.interruptions >= 1
    return before, code


def random_image(path: Path, size: int) -> bytes:
    data = hashlib.shake_256(path.name.encode()).digest(size)
    path.write_bytes(data)
    return data


async def test_raw_upload_resumes_at_the_last_acknowledged_chunk(tmp_path: Path, pki: TestPKI,
                                                                 mtls: ssl.SSLContext) -> None:
    image = tmp_path / "disk.raw"
    data = random_image(image, 48 * CHUNK)
    server = Server(tmp_path, pki)
    await raw_upload_resumes(server, image, data, mtls)
    assert sha256_prefix(server.data / "disk.img", len(data)) == hashlib.sha256(data).hexdigest()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "block.img"
    backing.write_bytes(b"\xee" * (64 * CHUNK))  # stale bytes that must not show through
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


async def test_raw_upload_to_a_block_volume_resumes_from_the_devices_tail_record(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, loop_device: Path) -> None:
    image = tmp_path / "disk.raw"
    data = random_image(image, 32 * CHUNK)
    server = Server(tmp_path, pki, device=loop_device)
    await raw_upload_resumes(server, image, data, mtls)
    with loop_device.open("rb") as device:
        assert device.read(len(data)) == data
        assert b"PYCDICKP" not in device.read()  # the record slots are cleared after the upload


async def raw_upload_resumes(server: Server, image: Path, data: bytes, mtls: ssl.SSLContext) -> None:
    try:
        before, code = await upload_with_kill(server, image, mtls, 0.4)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert code == 0, server.log(1)
    resumed = RESUMED.search(server.log(1))
    assert resumed is not None, server.log(1)
    offset = int(resumed.group(1))
    # nothing acknowledged was lost: the client re-sends only the chunk it was sending
    assert before <= offset <= before + CHUNK
    assert offset % CHUNK == 0
    message = server.termination()
    assert message.resume_decision == "Resumed"
    assert message.message == "Upload Complete"


async def resumed_after_kill(server: Server, image: Path, mtls: ssl.SSLContext,
                             between: Callable[[], None] | None = None) -> tuple[int, int]:
    """Upload with a kill at 40 %: the last offset acknowledged before it, and where the new server resumed."""
    try:
        before, code = await upload_with_kill(server, image, mtls, 0.4, between)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert code == 0, server.log(1)
    resumed = RESUMED.search(server.log(1))
    assert resumed is not None, server.log(1)
    return before, int(resumed.group(1))


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": lambda piece: gzip.compress(piece, compresslevel=1),  # members
    "xz": lambda piece: lzma.compress(piece, preset=0),  # streams
    "zst": lambda piece: zstandard.ZstdCompressor(level=1).compress(piece),  # frames
}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
async def test_a_compressed_upload_resumes_at_a_member_boundary(tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext,
                                                                suffix: str) -> None:
    raw = hashlib.shake_256(suffix.encode()).digest(40 * CHUNK)
    members = [COMPRESSORS[suffix](raw[i:i + CHUNK // 2]) for i in range(0, len(raw), CHUNK // 2)]
    image = tmp_path / f"disk.raw.{suffix}"
    image.write_bytes(b"".join(members))
    server = Server(tmp_path, pki)
    before, offset = await resumed_after_kill(server, image, mtls)
    # nothing acknowledged is lost: the new server fed the bytes kept past the member boundary itself,
    # so the client re-sends at most the chunk it was sending
    assert before <= offset <= before + CHUNK, (before, offset)
    assert "fed the" in server.log(1) and "bytes kept beside the checkpoint" in server.log(1)
    assert sha256_prefix(server.data / "disk.img", len(raw)) == hashlib.sha256(raw).hexdigest()
    assert server.termination().resume_decision == "Resumed"
    assert not list(server.data.glob(".disk.img.checkpoint*"))  # the record and its kept bytes are gone


async def test_a_single_member_gzip_upload_resumes_inside_its_member(tmp_path: Path, pki: TestPKI,
                                                                     mtls: ssl.SSLContext) -> None:
    """One gzip member (what `gzip` writes) restarts at a DEFLATE block boundary (`importer.gzipblocks`)."""
    raw = hashlib.shake_256(b"single").digest(20 * CHUNK) + bytes(20 * CHUNK)
    image = tmp_path / "disk.raw.gz"
    image.write_bytes(gzip.compress(raw, compresslevel=6))
    server = Server(tmp_path, pki)
    before, offset = await resumed_after_kill(server, image, mtls)
    # the bytes back to the block boundary were kept: at most the chunk being sent is sent again
    assert before <= offset <= before + CHUNK, (before, offset)
    assert sha256_prefix(server.data / "disk.img", len(raw)) == hashlib.sha256(raw).hexdigest()
    assert server.termination().resume_decision == "Resumed"
