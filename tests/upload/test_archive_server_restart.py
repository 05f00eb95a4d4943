"""An archive upload (`/v1beta1/upload-archive-chunk`, content type `archive`) whose upload server is
SIGKILLed in the middle, after part of a chunk reached it (the connection cut there), and started again on the same volume: the new server
continues the extraction from the last record (`importer.archivecheckpoint`), the client re-sends at
most the chunk it was sending (tar: the record covers every acknowledged byte; tar.gz: the server kept
the compressed bytes past the record, back to a DEFLATE block boundary, and feeds them itself), and the extracted tree is the one an upload
that was never interrupted leaves (contents, modes, symlinks; no staging directory, no checkpoint).
The archives are those of `tests.importer.test_archive_resume_kill`; the server process helper is
`tests.upload.test_server_restart.Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import time
from pathlib import Path

import pytest

from cdi.contracts import upload_protocol as up
from importer.archive import STAGING_NAME
from importer.checkpoint import CheckpointStore
from tests.importer.test_archive_resume_kill import build_tar, extracted
from tests.support.tls import TestPKI
from tests.upload.chunks import ChunkUpload
from tests.upload.test_server_restart import RESUMED, Server

CHUNK = 1 << 20


async def _offset(client: ChunkUpload) -> int:
    """The server's next expected offset, once it listens."""
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            return await client.offset()
        assert time.monotonic() < deadline, "the upload server did not come up"
        await asyncio.sleep(0.1)


async def _send_until(client: ChunkUpload, offset: int, stop: int) -> int:
    """Send chunks from `offset` until `stop` is acknowledged (or the last one was); the next offset."""
    size = len(client.data)
    while offset < stop:
        end = min(offset + client.chunk, size)
        response = await client.put(offset, final=end == size)
        assert response is not None and response.status == 200, response
        if end == size:
            return end
        offset = int(response.headers["x-upload-offset"])
    return offset


async def upload_with_kill(server: Server, data: bytes, mtls: ssl.SSLContext, cut: int) -> tuple[int, int]:
    """(the last offset acknowledged before the kill, the offset the new server asked for)."""
    client = ChunkUpload(server.port, mtls, data, CHUNK, headers={up.TOTAL_HEADER: str(len(data))},
                         path=up.ARCHIVE_CHUNK_PATH)
    server.start()
    acknowledged = await _send_until(client, await _offset(client), int(len(data) * 0.4))
    # half of the next chunk reaches the server, which extracts it, and is killed before the rest
    await client.put(acknowledged, cut_after=cut)
    await asyncio.sleep(0.5)
    server.kill()
    server.start()
    resumed = await _offset(client)
    await _send_until(client, resumed, len(data))
    assert server.process is not None
    assert await asyncio.to_thread(server.process.wait, 60) == 0, server.log(1)
    return acknowledged, resumed


@pytest.mark.parametrize("cut", [CHUNK // 2, CHUNK - 1000], ids=["half-a-chunk", "most-of-a-chunk"])
@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tar.gz"])
async def test_an_archive_upload_resumes_after_the_server_is_killed(tmp_path: Path, pki: TestPKI,
                                                                     mtls: ssl.SSLContext, compressed: bool,
                                                                     cut: int) -> None:
    tar, tree = build_tar(11)
    data = gzip.compress(tar, 6) if compressed else tar
    server = Server(tmp_path, pki)
    try:
        before, resumed = await upload_with_kill(server, data, mtls, cut)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    said = RESUMED.search(server.log(1))
    assert said is not None and int(said.group(1)) == resumed, server.log(1)
    assert "continuing the archive at tar byte" in server.log(1)
    # nothing acknowledged is lost, and only the chunk in flight is sent again
    assert before <= resumed <= before + CHUNK, (before, resumed)
    if compressed:  # the decoder restarted at a block boundary before it, fed from the bytes kept
        assert "fed the" in server.log(1), server.log(1)
    message = server.termination()
    assert message.message == "Upload Complete" and message.resume_decision == "Resumed", message
    assert extracted(server.data) == tree
    assert not (server.data / STAGING_NAME).exists() and not CheckpointStore.beside(server.data).path.exists()
