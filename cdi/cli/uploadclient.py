"""The resumable upload client behind `cdi image-upload`: sends an image file to the upload proxy as
offset-addressed chunks (`cdi.contracts.upload_protocol`), resuming after any dropped connection from
the offset the server reports — so an interruption costs at most one chunk — and fetching a fresh token
when the current one is about to expire. Progress goes to a callback. Used by `cdi.cli.imageupload`.

Chunks are streamed from the file in `PIECE`-sized reads (`FileSlice`), so memory stays at a few MiB
whatever the chunk size; `cdi.cli.chunking.ChunkSizer` sizes them (about `CHUNK_SECONDS` each at the
rate measured so far, unless a size is forced). This module imports aiohttp: `cdi image-upload`
imports it on a thread while it waits for the upload server, not at start.

Finishing is robust to a lost last reply: once the final chunk has gone out, an interruption first
asks `completed` (the caller checks the DataVolume's or PVC's phase) and stops if the upload landed;
and the proxy's "already uploaded" answer (409 with `X-Upload-Phase: Succeeded`) ends the upload as
done after the final chunk, or raises `AlreadyUploaded` before it (the target was complete before we
began: nothing of ours was taken).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from cdi.cli.chunking import CHUNK_SECONDS as CHUNK_SECONDS
from cdi.cli.chunking import FIRST_CHUNK as FIRST_CHUNK
from cdi.cli.chunking import MIN_CHUNK as MIN_CHUNK
from cdi.cli.chunking import ChunkSizer as ChunkSizer
from cdi.cli.errors import AlreadyUploaded as AlreadyUploaded
from cdi.cli.errors import CliError
from cdi.cli.uploadtokens import RENEW_BEFORE, token_expiry
from cdi.contracts import upload_protocol as up

PIECE = 1 << 20
MAX_ATTEMPTS = 30


@dataclass(frozen=True)
class UploadJob:
    proxy_url: str
    namespace: str
    pvc: str
    path: Path
    ssl_context: ssl.SSLContext | bool
    chunk_size: int | None = None  # None: sized from the measured rate (`ChunkSizer`)


class FileSlice(Payload):
    """`length` bytes of an open file from `offset`, read piece by piece as the connection takes them."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__(fd, content_type="application/octet-stream")
        self._fd = fd
        self._offset = offset
        self._length = length
        self._size = length

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an image slice is binary")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        loop = asyncio.get_running_loop()
        remaining = self._length if content_length is None else min(self._length, content_length)
        position = self._offset
        while remaining > 0:
            data = await loop.run_in_executor(None, os.pread, self._fd, min(PIECE, remaining), position)
            if not data:
                raise OSError(f"the image file ended at byte {position}; was it changed during the upload?")
            await writer.write(data)
            position += len(data)
            remaining -= len(data)


TokenSource = Callable[[], Awaitable[str]]
Progress = Callable[[int, int], None]
Completion = Callable[[], Awaitable[bool]]


async def _never_known() -> bool:
    return False


def _already_uploaded(response: aiohttp.ClientResponse) -> bool:
    return response.status == up.ALREADY_UPLOADED_STATUS and \
        response.headers.get(up.PHASE_HEADER) == up.PHASE_SUCCEEDED


class ResumableUploader:
    def __init__(self, job: UploadJob, tokens: TokenSource, progress: Progress,
                 completed: Completion = _never_known) -> None:
        self._job = job
        self._tokens = tokens
        self._progress = progress
        self._completed = completed
        self.final_sent = False  # the final chunk went out at least once
        self._token = ""
        self._expires = 0.0
        self._sizer = ChunkSizer(job.chunk_size)
        self.interruptions = 0
        self.transfer_seconds = 0.0  # from the first chunk sent to the last one acknowledged
        self._started = time.monotonic()

    async def _headers(self) -> dict[str, str]:
        if time.time() > self._expires - RENEW_BEFORE:
            self._token = await self._tokens()
            self._expires = token_expiry(self._token)
        return {"Authorization": f"Bearer {self._token}", up.TARGET_HEADER: f"{self._job.namespace}/{self._job.pvc}"}

    async def run(self) -> None:
        """Upload the file; returns once the server acknowledged the final chunk or the upload is known to
        have landed. `AlreadyUploaded` if the target was complete before this upload's final chunk."""
        try:
            await self._run()
        except AlreadyUploaded:
            if not self.final_sent:
                raise
        self.transfer_seconds = self.transfer_seconds or time.monotonic() - self._started

    async def _run(self) -> None:
        total = self._job.path.stat().st_size
        url = self._job.proxy_url.rstrip("/") + up.CHUNK_PATH
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            offset = await self._offset(session, url)
            attempts = 0
            self._started = time.monotonic()
            with self._job.path.open("rb") as image:
                while True:
                    try:
                        offset, done = await self._send(session, url, image.fileno(), offset, total)
                        attempts = 0
                        if done:
                            self.transfer_seconds = time.monotonic() - self._started
                            return
                    except (TimeoutError, aiohttp.ClientError, ConnectionError, _Retry) as e:
                        attempts += 1
                        self.interruptions += 1
                        if await self._landed():
                            return  # the final chunk's reply was lost, but the upload succeeded
                        if attempts > MAX_ATTEMPTS:
                            raise CliError(f"upload kept failing at byte {offset}: {e}") from e
                        await asyncio.sleep(min(2 ** min(attempts, 4) * 0.25, 5))
                        offset = await self._offset(session, url)

    async def _landed(self) -> bool:
        """After the final chunk went out: whether the target says the upload succeeded."""
        return self.final_sent and await self._completed()

    async def _offset(self, session: aiohttp.ClientSession, url: str) -> int:
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with session.get(url, headers=await self._headers(), ssl=self._job.ssl_context) as response:
                    if response.status == 200:
                        if (limit := response.headers.get(up.MAX_CHUNK_HEADER, "")).isdigit():
                            self._sizer.server_max = int(limit)
                        return int(response.headers.get(up.OFFSET_HEADER, "0"))
                    text = await response.text()
                    if _already_uploaded(response):
                        raise AlreadyUploaded(_message(text))
                    if response.status not in (502, 503, 504):
                        raise CliError(f"the upload proxy refused the upload ({response.status}): {text.strip()}")
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
            if await self._landed():
                raise AlreadyUploaded("the upload succeeded")
            await asyncio.sleep(min(0.5 * (attempt + 1), 5))
        raise CliError(f"the upload proxy at {self._job.proxy_url} did not answer; is it (`cdi serve` or "
                       f"`cdi uploadproxy`) running?")

    async def _send(self, session: aiohttp.ClientSession, url: str, fd: int, offset: int,
                    total: int) -> tuple[int, bool]:
        if os.fstat(fd).st_size != total:
            raise CliError(f"{self._job.path} changed size during the upload ({total} bytes when it started, "
                           f"{os.fstat(fd).st_size} now); upload a file nothing is writing to")
        length = max(0, min(self._sizer.next(), total - offset))
        final = offset + length >= total
        params = {up.OFFSET_PARAM: str(offset), **({up.FINAL_PARAM: "true"} if final else {})}
        headers: dict[str, Any] = {**await self._headers(), up.TOTAL_HEADER: str(total)}
        started = time.monotonic()
        self.final_sent = self.final_sent or final
        async with session.put(url, params=params, data=FileSlice(fd, offset, length), headers=headers,
                               ssl=self._job.ssl_context) as response:
            text = await response.text()
            expected = int(response.headers.get(up.OFFSET_HEADER, offset))
            if response.status == 200:
                self._sizer.observe(expected - offset, time.monotonic() - started)
                self._progress(expected, total)
                return expected, final and expected >= total
            if response.status == 202:
                await asyncio.sleep(1)
                return offset, False  # validation still running: send the final chunk again
            if _already_uploaded(response):
                raise AlreadyUploaded(_message(text))
            if response.status == 409:
                return expected, False
            if response.status in (502, 503, 504):
                raise _Retry(f"{response.status}: {text.strip()}")
            raise CliError(f"upload failed ({response.status}): {_message(text)}")


class _Retry(Exception):
    pass


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
    return str(doc.get("message") or text).strip() if isinstance(doc, dict) else text.strip()
