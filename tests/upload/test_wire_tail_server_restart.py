"""Compressed uploads whose upload server is SIGKILLed, with the compressed bytes past the record kept
beside it (`importer.uploadserver.wiretail`): a single-block xz or single-frame zstd upload, which has no
restart point before its end, continues without the client sending again what was acknowledged (the
new pipeline starts from the image's first byte, fed from the kept bytes); a damaged tail is detected
and the server resumes at the record, with the reason in its log; onto a Block volume the tail lives on
the pod's scratch volume. The server process helpers are `tests.upload.test_server_restart`'s."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import lzma
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from cdi.contracts import upload_protocol as up
from importer.uploadserver.wiretail import ENTRY, MAGIC
from tests.support.tls import TestPKI
from tests.upload.chunks import ChunkUpload
from tests.upload.support import sha256_prefix
from tests.upload.test_archive_server_restart import _offset, _send_until
from tests.upload.test_server_restart import CHUNK, Server, loop_device, resumed_after_kill

__all__ = ["loop_device"]  # the fixture, shared

SINGLE: dict[str, Callable[[bytes], bytes]] = {
    "xz": lambda raw: lzma.compress(raw, preset=0),  # one stream, one block
    "zst": lambda raw: zstandard.ZstdCompressor(level=1).compress(raw),  # one frame
}


@pytest.mark.parametrize("suffix", sorted(SINGLE))
async def test_a_single_block_upload_resumes_from_the_kept_bytes(tmp_path: Path, pki: TestPKI,
                                                                 mtls: ssl.SSLContext, suffix: str) -> None:
    raw = hashlib.shake_256(suffix.encode()).digest(24 * CHUNK)
    image = tmp_path / f"disk.raw.{suffix}"
    image.write_bytes(SINGLE[suffix](raw))
    server = Server(tmp_path, pki)
    before, offset = await resumed_after_kill(server, image, mtls)
    assert before <= offset <= before + CHUNK, (before, offset)
    assert "the decoder restarts from the image's start" in server.log(1), server.log(1)
    assert sha256_prefix(server.data / "disk.img", len(raw)) == hashlib.sha256(raw).hexdigest()
    message = server.termination()
    assert (message.resume_decision, message.message) == ("Resumed", "Upload Complete"), message
    assert not list(server.data.glob(".disk.img.checkpoint*"))


def _members(name: str, size: int) -> tuple[bytes, bytes]:
    """(raw, gzip members of half a chunk of it each)."""
    raw = hashlib.shake_256(name.encode()).digest(size)
    return raw, b"".join(gzip.compress(raw[i:i + CHUNK // 2], 1) for i in range(0, size, CHUNK // 2))


async def test_a_damaged_tail_resumes_at_the_record_and_says_why(tmp_path: Path, pki: TestPKI,
                                                                 mtls: ssl.SSLContext) -> None:
    raw, data = _members("damaged", 40 * CHUNK)
    image = tmp_path / "disk.raw.gz"
    image.write_bytes(data)
    server = Server(tmp_path, pki)
    damaged: list[Path] = []
    before, offset = await resumed_after_kill(server, image, mtls,
                                              lambda: damaged.extend(_damage_first_entries(server.data)))
    assert damaged, "no kept bytes were there to damage"
    log = server.log(1)
    assert "has a torn or damaged entry" in log, log
    assert "fed the" not in log  # nothing damaged was fed: the new server resumed at the record
    assert before - CHUNK <= offset < before, (before, offset)  # the record: a member boundary in the last chunk
    assert sha256_prefix(server.data / "disk.img", len(raw)) == hashlib.sha256(raw).hexdigest()
    assert server.termination().resume_decision == "Resumed"


def _damage_first_entries(directory: Path) -> list[Path]:
    damaged = sorted(directory.glob(".disk.img.checkpoint.tail.*"))
    for path in damaged:
        with path.open("r+b") as f:
            f.seek(len(MAGIC) + ENTRY.size)
            byte = f.read(1)
            f.seek(len(MAGIC) + ENTRY.size)
            f.write(bytes([byte[0] ^ 0xFF]))
    return damaged


async def test_a_server_that_resumed_at_the_record_keeps_a_tail_for_the_next_restart(
        tmp_path: Path, pki: TestPKI, mtls: ssl.SSLContext) -> None:
    """Kill, damage the tail (the second server resumes at the record), kill again: the third server
    feeds what the second kept, labelled from the record's offset, and the disk is still the image."""
    raw, data = _members("twice", 30 * CHUNK)
    server = Server(tmp_path, pki)
    client = ChunkUpload(server.port, mtls, data, CHUNK, headers={up.TOTAL_HEADER: str(len(data))})
    try:
        server.start()
        first = await _send_until(client, await _offset(client), len(data) // 3)
        server.kill()
        assert _damage_first_entries(server.data)
        server.start()
        at_record = await _offset(client)
        assert at_record < first  # resumed at the record, before the last acknowledged chunk's end
        second = await _send_until(client, at_record, 2 * len(data) // 3)
        server.kill()
        server.start()
        resumed = await _offset(client)
        assert second <= resumed <= second + CHUNK, (second, resumed)
        assert await _send_until(client, resumed, len(data)) == len(data)
        assert server.process is not None
        assert await asyncio.to_thread(server.process.wait, 60) == 0, server.log(2)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert "fed the" in server.log(2), server.log(2)
    assert sha256_prefix(server.data / "disk.img", len(raw)) == hashlib.sha256(raw).hexdigest()


async def test_a_gzip_upload_to_a_block_volume_keeps_its_tail_on_scratch(tmp_path: Path, pki: TestPKI,
                                                                         mtls: ssl.SSLContext,
                                                                         loop_device: Path) -> None:
    raw, data = _members("block", 24 * CHUNK)
    image = tmp_path / "disk.raw.gz"
    image.write_bytes(data)
    server = Server(tmp_path, pki, device=loop_device)
    seen: list[str] = []
    before, offset = await resumed_after_kill(
        server, image, mtls, lambda: seen.extend(p.name for p in server.scratch.glob(".disk.checkpoint.tail.*")))
    assert seen, "the tail was not on the scratch volume when the server was killed"
    assert before <= offset <= before + CHUNK, (before, offset)
    with loop_device.open("rb") as device:
        assert hashlib.sha256(device.read(len(raw))).hexdigest() == hashlib.sha256(raw).hexdigest()
    assert server.termination().resume_decision == "Resumed"
    assert not list(server.scratch.glob(".disk.checkpoint.tail.*"))
