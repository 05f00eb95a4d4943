"""The cloner's side of the clone protocol (`cdi.contracts.clone_protocol`) over HTTPS with the clone's
client certificate, and the one place its foreign exceptions are translated:

    connection refused/reset, TLS errors, timeouts, 5xx, 409    → `Retry` (the sender resumes)
    4xx with a JSON reason from the server                      → `CloneRefused` (reason and retryable
                                                                  as the server says)
    401                                                         → `CloneRefused` "CloneUnauthorized"

Certificates arrive as PEM contents in the environment (upstream's contract); `ssl` loads a client
pair only from files, so they are written to a private temporary directory for the moment it takes.
Used by `importer.cloner.sender`.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from cdi.contracts import clone_protocol as cp
from importer.errors import ImportFailure

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60, sock_connect=15)
WRITE_SLICE = 1 << 20


class ExtentPayload(Payload):
    """An extent's bytes as a request body, handed to the transport a slice at a time (aiohttp's bytes
    payload writes them in one go and warns that it may hold up the event loop)."""

    _value: bytes

    def __init__(self, data: bytes) -> None:
        super().__init__(data, content_type="application/octet-stream")
        self._size = len(data)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an extent is binary data")

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self._value

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        view = memoryview(self._value)[:content_length]
        for start in range(0, len(view), WRITE_SLICE):
            await writer.write(view[start:start + WRITE_SLICE])


class CloneRefused(ImportFailure):
    """The upload server refused the clone for a reason it named."""

    def __init__(self, message: str, reason: str = "CloneRefused", retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class Retry(Exception):
    """A failure worth resuming after: the connection, the server's state or a conflict."""


def client_context(cert_pem: str, key_pem: str, ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    with tempfile.TemporaryDirectory(prefix="cdi-cloner-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        cert.write_text(cert_pem)
        context.load_cert_chain(cert, key)
    return context


class CloneClient:
    def __init__(self, base_url: str, context: ssl.SSLContext | None, server_name: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = context if context is not None else False
        self._server_name = server_name
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0  # extent bytes put on the wire (counting re-sends)

    async def __aenter__(self) -> CloneClient:
        self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> cp.State:
        assert self._session is not None, "use the client as an async context manager"
        if self._server_name and self._ssl is not False:
            kwargs["server_hostname"] = self._server_name
        try:
            async with self._session.request(method, self._base + path, ssl=self._ssl, **kwargs) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as e:
            raise Retry(f"{method} {path}: {type(e).__name__}: {e}") from e
        if status == 200:
            return cp.State.parse(text)
        raise _refusal(method, path, status, text)

    async def begin(self, begin: cp.Begin) -> cp.State:
        return await self._call("POST", cp.BEGIN_PATH, json=begin.to_json())

    async def state(self) -> cp.State:
        return await self._call("GET", cp.STATE_PATH)

    async def put(self, offset: int, data: bytes) -> cp.State:
        self.sent += len(data)
        return await self._call("PUT", cp.EXTENT_PATH, params={cp.OFFSET_PARAM: str(offset)},
                                data=ExtentPayload(data))

    async def finish(self, digest: str) -> cp.State:
        return await self._call("POST", cp.FINISH_PATH, json={"digest": digest})


class NotBegun(Retry):
    """The server has no clone (it restarted): begin again."""


def _refusal(method: str, path: str, status: int, text: str) -> Exception:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    reason = doc.get("reason") if isinstance(doc, dict) else None
    message = str(doc.get("message")) if isinstance(doc, dict) else text.strip()
    if status == 404 and reason == "NoCloneInProgress":
        return NotBegun(message)
    if status == 401:
        return CloneRefused(f"the upload server refused the clone's client certificate ({method} {path})",
                            "CloneUnauthorized")
    if status >= 500 or status in (409, 429) or status == 503:
        return Retry(f"{method} {path}: HTTP {status}: {message}")
    retryable = bool(doc.get("retryable")) if isinstance(doc, dict) else False
    return CloneRefused(f"{message} (HTTP {status})", str(reason or "CloneRefused"), retryable)
