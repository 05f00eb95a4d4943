"""A compressed qcow2 upload (qcow2.gz, multi-block qcow2.xz) whose upload server is SIGKILLed part way
and started again on the same volume: the new server restarts the decompressor at the record's
restart point (a DEFLATE block or xz block boundary at or past the start of the chunk being fed when
the record fell due), feeds it the compressed bytes it kept past the record (`importer.uploadserver.wiretail`),
drops the decoded bytes up to the converter's position, rebuilds the converter from the image's ranges it
kept beside the record (`importer.checkpointranges`), reports the end of the kept bytes as the offset,
and the real `cdi image-upload` client continues there. The disk is `qemu-img convert -O raw`'s; nothing
acknowledged is lost; the client re-sends at most the chunk it was sending, which a relay counting what
it sent checks. Onto a Block volume the ranges and the kept bytes are on the pod's scratch volume."""

from __future__ import annotations

import gzip
import hashlib
import ssl
import subprocess
from pathlib import Path

import pytest

from importer.checkpoint import CHECKPOINT_NAME, RANGES_SUFFIX
from importer.checkpointdevice import DEVICE_RANGES_NAME
from tests.support.tls import TestPKI
from tests.upload.support import sha256_prefix
from tests.upload.test_qcow2_server_restart import CHUNK, RESUMED, SIZE, block_device, images, upload_with_kill
from tests.upload.test_server_restart import Server

__all__ = ["block_device", "images"]  # the module's fixtures, shared

XZ_BLOCK = 512 << 10


def _compress(source: Path, suffix: str, into: Path) -> Path:
    image = into / f"{source.name}.{suffix}"
    if suffix == "gz":
        image.write_bytes(gzip.compress(source.read_bytes(), 1))
    else:
        copy = into / source.name
        copy.write_bytes(source.read_bytes())
        subprocess.run(["xz", "-0", "-T2", f"--block-size={XZ_BLOCK}", str(copy)], check=True)
    return image


@pytest.mark.parametrize(("name", "suffix"), [("compressed", "gz"), ("plain", "gz"), ("compressed", "xz")])
@pytest.mark.parametrize("kill_at", [0.3, 0.7])
async def test_a_compressed_qcow2_upload_resumes_after_the_upload_server_is_killed(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path, name: str, suffix: str,
        kill_at: float) -> None:
    image = _compress(images / f"{name}.qcow2", suffix, tmp_path)
    server = Server(tmp_path, pki)
    try:
        before, sent = await upload_with_kill(server, image, mtls, kill_at)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    resumed = RESUMED.search(server.log(1))
    assert resumed is not None, server.log(1)
    offset = int(resumed.group(1))
    # at or past the end of the last chunk acknowledged: nothing acknowledged is sent again
    assert before <= offset <= before + CHUNK, (before, offset)
    size = image.stat().st_size
    # the image, the chunk in flight, TLS and HTTP
    assert sent <= size + CHUNK + size // 100, f"the client sent {sent} bytes for {size}"
    assert "read the image's tables again from the ranges kept beside the checkpoint" in server.log(1)
    message = server.termination()
    assert (message.resume_decision, message.message) == ("Resumed", "Upload Complete"), message
    assert sha256_prefix(server.data / "disk.img", SIZE) == \
        hashlib.sha256((images / f"{name}.qemu.raw").read_bytes()).hexdigest()
    assert not (server.data / CHECKPOINT_NAME).exists()
    assert not (server.data / (CHECKPOINT_NAME + RANGES_SUFFIX)).exists()  # removed with the record


async def test_a_qcow2_gz_upload_whose_kept_tables_are_gone_starts_over_and_says_so(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path) -> None:
    image = _compress(images / "plain.qcow2", "gz", tmp_path)
    server = Server(tmp_path, pki)
    kept = server.data / (CHECKPOINT_NAME + RANGES_SUFFIX)

    def lose_the_kept_ranges() -> None:
        assert kept.exists()
        kept.unlink()

    try:
        _, sent = await upload_with_kill(server, image, mtls, 0.4, lose_the_kept_ranges)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    message = server.termination()
    assert message.resume_decision == "StartedOver", message
    assert "the image's tables kept beside the checkpoint are gone" in (message.resume_message or "")
    assert sent > image.stat().st_size * 1.3  # the bytes before the kill were sent again
    assert sha256_prefix(server.data / "disk.img", SIZE) == \
        hashlib.sha256((images / "plain.qemu.raw").read_bytes()).hexdigest()


async def test_a_qcow2_gz_upload_onto_a_block_volume_resumes_with_its_ranges_on_scratch(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext, images: Path, block_device: Path) -> None:
    image = _compress(images / "compressed.qcow2", "gz", tmp_path)
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
            hashlib.sha256((images / "compressed.qemu.raw").read_bytes()).hexdigest()
        assert b"PYCDICKP" not in device.read()  # the record slots are cleared after the upload
    assert not kept.exists()  # and the kept ranges with them
