"""The resumable upload client behind `cdi image-upload`: sends an image file to the upload proxy as
offset-addressed chunks (`cdi.contracts.upload_protocol`), resuming after any dropped connection from
the offset the server reports — so an interruption costs at most one chunk — and fetching a fresh token
when the current one is about to expire. Progress goes to a callback. Used by `cdi.cli.imageupload`."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from cdi.cli.errors import CliError
from cdi.contracts import upload_protocol as up

DEFAULT_CHUNK = 32 << 20
MAX_ATTEMPTS = 30
RENEW_BEFORE = 60.0


@dataclass(frozen=True)
class UploadJob:
    proxy_url: str
    namespace: str
    pvc: str
    path: Path
    ssl_context: ssl.SSLContext | bool
    chunk_size: int = DEFAULT_CHUNK


TokenSource = Callable[[], Awaitable[str]]
Progress = Callable[[int, int], None]


def token_expiry(token: str) -> float:
    """`exp` of a JWT, read without verifying it (only to know when to ask for a new one)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError) as e:
        raise CliError(f"the upload token is malformed: {e}") from e


class ResumableUploader:
    def __init__(self, job: UploadJob, tokens: TokenSource, progress: Progress) -> None:
        self._job = job
        self._tokens = tokens
        self._progress = progress
        self._token = ""
        self._expires = 0.0
        self.interruptions = 0

    async def _headers(self) -> dict[str, str]:
        if time.time() > self._expires - RENEW_BEFORE:
            self._token = await self._tokens()
            self._expires = token_expiry(self._token)
        return {"Authorization": f"Bearer {self._token}", up.TARGET_HEADER: f"{self._job.namespace}/{self._job.pvc}"}

    async def run(self) -> None:
        total = self._job.path.stat().st_size
        url = self._job.proxy_url.rstrip("/") + up.CHUNK_PATH
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            offset = await self._offset(session, url)
            attempts = 0
            with self._job.path.open("rb") as image:
                while True:
                    try:
                        offset, done = await self._send(session, url, image, offset, total)
                        attempts = 0
                        if done:
                            return
                    except (TimeoutError, aiohttp.ClientError, ConnectionError, _Retry) as e:
                        attempts += 1
                        self.interruptions += 1
                        if attempts > MAX_ATTEMPTS:
                            raise CliError(f"upload kept failing at byte {offset}: {e}") from e
                        await asyncio.sleep(min(2 ** min(attempts, 4) * 0.25, 5))
                        offset = await self._offset(session, url)

    async def _offset(self, session: aiohttp.ClientSession, url: str) -> int:
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with session.get(url, headers=await self._headers(), ssl=self._job.ssl_context) as response:
                    if response.status == 200:
                        return int(response.headers.get(up.OFFSET_HEADER, "0"))
                    text = await response.text()
                    if response.status not in (502, 503, 504):
                        raise CliError(f"the upload proxy refused the upload ({response.status}): {text.strip()}")
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
            await asyncio.sleep(min(0.5 * (attempt + 1), 5))
        raise CliError("the upload proxy did not answer; is `cdi serve` running?")

    async def _send(self, session: aiohttp.ClientSession, url: str, image: BinaryIO, offset: int,
                    total: int) -> tuple[int, bool]:
        image.seek(offset)
        data = image.read(self._job.chunk_size)
        final = offset + len(data) >= total
        params = {up.OFFSET_PARAM: str(offset), **({up.FINAL_PARAM: "true"} if final else {})}
        headers = {**await self._headers(), up.TOTAL_HEADER: str(total)}
        async with session.put(url, params=params, data=data, headers=headers,
                               ssl=self._job.ssl_context) as response:
            text = await response.text()
            expected = int(response.headers.get(up.OFFSET_HEADER, offset))
            if response.status == 200:
                self._progress(expected, total)
                return expected, final and expected >= total
            if response.status == 202:
                await asyncio.sleep(1)
                return offset, False  # validation still running: send the final chunk again
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
