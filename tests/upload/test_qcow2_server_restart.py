"""A qcow2 upload whose upload server is SIGKILLed part way and started again on the same volume: the
new server rebuilds the streaming converter from the image's ranges it kept beside its record
(`importer.checkpointranges`), reports the record's offset, and the real `cdi image-upload` client
(`ResumableUploader`) continues there. The disk is `qemu-img convert -O raw`'s, with the holes of an
uninterrupted streaming conversion, and the client re-sends at most the chunk it was sending (a relay
counts what it sent in all).
Chunks are not a multiple of the cluster size, so records fall inside clusters (the bytes read of
the cut cluster travel in the record's carry). Compressed qcow2 uploads (qcow2.gz, qcow2.xz):
`test_compressed_qcow2_server_restart`."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi.cli.uploadclient import ResumableUploader, UploadJob
from importer.checkpoint import CHECKPOINT_NAME, RANGES_SUFFIX
from importer.checkpointdevice import DEVICE_RANGES_NAME
from tests.hostclone.support import loop_device
from tests.streaming.qcow2_builders import convert_with_stream, patterned, qemu_img, qemu_raw
from tests.streaming.test_qcow2_restart import allocation
from tests.support.relay import LoopbackRelay, stop_pumps
from tests.support.tls import TestPKI
from tests.upload.support import HOST, sha256_prefix
from tests.upload.test_server_restart import Server, tokens

MiB = 1 << 20
SIZE = 40 * MiB
CHUNK = MiB + 12345  # never a multiple of a cluster: a chunk ends inside a cluster
RESUMED = re.compile(r"Resumed the upload after an upload-server restart at byte (\d+)")


def _disk() -> bytes:
    """128 KiB blocks: compressible ones, incompressible ones (qemu keeps those uncompressed even with
    -c) and runs of zeros (holes), data at the very end."""
    rng = random.Random(1516)
    blocks = []
    for i in range(SIZE // (128 << 10)):
        pick = rng.random()
        last = i == SIZE // (128 << 10) - 1
        blocks.append(rng.randbytes(128 << 10) if pick < 0.3 else patterned(128 << 10) if pick < 0.7 or last
                      else bytes(128 << 10))
    return b"".join(blocks)


IMAGES = {
    "plain": ("-o", "cluster_size=65536"),
    "compressed": ("-c", "-o", "cluster_size=65536"),
    "compressed-small-clusters": ("-c", "-o", "cluster_size=4096"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("qcow2-upload-images")
    raw = directory / "disk.raw"
    raw.write_bytes(_disk())
    for name, options in IMAGES.items():
        qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, raw, directory / f"{name}.qcow2")
        assert qemu_raw(directory / f"{name}.qcow2", directory / f"{name}.qemu.raw") == raw.read_bytes()
        convert_with_stream(directory / f"{name}.qcow2", directory / f"{name}.stream")  # an uninterrupted run's holes
    return directory


class CountingRelay(LoopbackRelay):
    """Between the client and the server (TCP, so TLS passes through): counts the client's bytes."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(HOST, upstream_port)
        self.sent = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        pumps = [asyncio.create_task(self._copy(reader, up_writer, count=True)),
                 asyncio.create_task(self._copy(up_reader, writer, count=False))]
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({*pumps, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            await stop_pumps(pumps)

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool) -> None:
        try:
            while data := await reader.read(64 * 1024):
                writer.write(data)
                await writer.drain()
                if count:
                    self.sent += len(data)
        except OSError:
            return


async def upload_with_kill(server: Server, image: Path, mtls: ssl.SSLContext, kill_at: float,
                           between: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Upload `image` with the real client in `CHUNK`s, SIGKILL the server once `kill_at` of it was
    acknowledged, start a new one; returns the last offset acknowledged before the kill and the bytes
    the client sent in all (TLS and HTTP framing included)."""
    relay = CountingRelay(server.port)
    await relay.start()
    try:
        return await _upload_with_kill(server, image, mtls, kill_at, relay.port, between), relay.sent
    finally:
        await relay.close()


async def _upload_with_kill(server: Server, image: Path, mtls: ssl.SSLContext, kill_at: float, port: int,
                            between: Callable[[], None]) -> int:
    size = image.stat().st_size
    acknowledged: list[int] = []
    reached = asyncio.Event()

    def progress(offset: int, total: int) -> None:
        acknowledged.append(offset)
        if offset >= kill_at * total:
            reached.set()

    job = UploadJob(f"https://{HOST}:{port}", "default", "disk", image, mtls, chunk_size=CHUNK)
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
    between()
    server.start()
    await asyncio.wait_for(client, 120)
    assert server.process is not None
    code = await asyncio.to_thread(server.process.wait, 60)
    assert code == 0, server.log(1)
    assert uploader.interruptions >= 1
    return before


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("kill_at", [0.15, 0.5, 0.85])
async def test_a_qcow2_upload_resumes_after_the_upload_server_is_killed(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path, name: str, kill_at: float) -> None:
    image = images / f"{name}.qcow2"
    server = Server(tmp_path, pki)
    try:
        before, sent = await upload_with_kill(server, image, mtls, kill_at)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    resumed = RESUMED.search(server.log(1))
    assert resumed is not None, server.log(1)
    offset = int(resumed.group(1))
    # nothing acknowledged was lost, and the client re-sent at most the chunk it was sending
    assert before <= offset <= before + CHUNK, (before, offset)
    size = image.stat().st_size
    assert sent <= size + CHUNK + size // 100, f"the client sent {sent} bytes for {size}"  # + TLS and HTTP
    assert offset == image.stat().st_size or offset % CHUNK == 0, offset  # the record is at a chunk's end
    assert "read the image's tables again from the ranges kept beside the checkpoint" in server.log(1)
    message = server.termination()
    assert message.resume_decision == "Resumed", message
    assert message.message == "Upload Complete"
    disk = server.data / "disk.img"
    assert sha256_prefix(disk, SIZE) == hashlib.sha256((images / f"{name}.qemu.raw").read_bytes()).hexdigest()
    assert allocation(disk) == allocation(images / f"{name}.stream")
    assert not (server.data / CHECKPOINT_NAME).exists()
    assert not (server.data / (CHECKPOINT_NAME + RANGES_SUFFIX)).exists()  # removed with the record


@pytest.fixture
def block_device(tmp_path: Path) -> Iterator[Path]:
    """A loop device a little larger than the disk, full of stale bytes that must not show through."""
    with loop_device(tmp_path / "block.img", SIZE + 8 * MiB) as device:
        yield device


@pytest.mark.parametrize("name", ["plain", "compressed"])
async def test_a_qcow2_upload_onto_a_block_volume_resumes_with_its_ranges_on_scratch(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path, name: str, block_device: Path) -> None:
    image = images / f"{name}.qcow2"
    server = Server(tmp_path, pki, device=block_device)
    kept = server.scratch / DEVICE_RANGES_NAME
    seen: list[bool] = []
    try:
        before, sent = await upload_with_kill(server, image, mtls, 0.5, lambda: seen.append(kept.is_file()))
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert seen == [True]  # the tables were on the scratch volume when the server was killed
    resumed = RESUMED.search(server.log(1))
    assert resumed is not None, server.log(1)
    assert before <= int(resumed.group(1)) <= before + CHUNK
    size = image.stat().st_size
    assert sent <= size + CHUNK + size // 100, f"the client sent {sent} bytes for {size}"
    message = server.termination()
    assert (message.resume_decision, message.message) == ("Resumed", "Upload Complete"), message
    with block_device.open("rb") as device:
        assert hashlib.sha256(device.read(SIZE)).hexdigest() == \
            hashlib.sha256((images / f"{name}.qemu.raw").read_bytes()).hexdigest()
        assert b"PYCDICKP" not in device.read()  # the record slots are cleared after the upload
    assert not kept.exists()  # and the kept ranges with them


async def test_kept_ranges_gone_after_the_kill_mean_starting_over_with_the_reason(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path) -> None:
    image = images / "plain.qcow2"
    server = Server(tmp_path, pki)
    kept = server.data / (CHECKPOINT_NAME + RANGES_SUFFIX)

    def lose_the_kept_ranges() -> None:
        assert kept.exists()
        kept.unlink()

    try:
        await upload_with_kill(server, image, mtls, 0.5, lose_the_kept_ranges)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    message = server.termination()
    assert message.resume_decision == "StartedOver", message
    assert "the image's tables kept beside the checkpoint are gone" in (message.resume_message or "")
    assert sha256_prefix(server.data / "disk.img", SIZE) == \
        hashlib.sha256((images / "plain.qemu.raw").read_bytes()).hexdigest()
