"""The cloner's side of the clone protocol (`cdi.contracts.clone_protocol`) over HTTPS with the clone's
client certificate, and the one place its foreign exceptions are translated:

    connection refused/reset, TLS errors, timeouts, 5xx, 409    → `Retry` (the sender resumes)
    404 "NoCloneInProgress" (the upload server restarted)       → `NotBegun`, a `Retry`
    401                                                         → `CloneRefused` "CloneUnauthorized"
    other 4xx with a JSON reason from the server                → `CloneRefused` (reason and retryable
                                                                  as the server says)

Blocking TLS connections, used from a worker thread: `SSL_write` straight to the socket (no memory
BIO, no event loop between the bytes and the kernel), which is what makes the cloner as fast as the
page cache and the cipher allow. Begin, state and finish go over one connection; extents over a
second one upgraded to the server's blocking extent reader (`cp.UPGRADE_PATH`), or over the first
when the server answers the upgrade with anything but 101 (an older server). Extents are pipelined
one deep (`push`, `send_extent`): the next request is written before the previous answer is read, so
the server always has the next extent queued in the socket while it writes the last one; the server
handles a connection's requests in order, so ordering holds. `send_extent` (the sender's path) hashes
each piece of the body (with the digest algorithm negotiated at begin) on a second thread while the
piece is encrypted and written, both reading it from the CPU's cache.
Certificates arrive as PEM contents (upstream's contract); `ssl` loads a client pair only from files,
so they are written to a private temporary directory for the moment it takes. Used by
`importer.cloner.sender`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cdi.contracts import clone_protocol as cp
from importer.errors import ImportFailure

TIMEOUT = 60.0
PIECE = 1 << 20  # hashed and written to the TLS socket side by side; small enough to stay in the CPU cache
_HEAD_LIMIT = 64 << 10


class CloneRefused(ImportFailure):
    """The upload server refused the clone for a reason it named."""

    def __init__(self, message: str, reason: str = "CloneRefused", retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class Retry(Exception):
    """A failure worth resuming after: the connection, the server's state or a conflict."""


class NotBegun(Retry):
    """The server has no clone (it restarted): begin again."""


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


class _Connection:
    """One HTTP/1.1 connection (TLS unless the context is None), blocking; every failure is `Retry`."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, server_name: str) -> None:
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = context.wrap_socket(raw, server_hostname=server_name) if context else raw
        self._reader = self.sock.makefile("rb")
        self.host = host

    def send(self, method: str, target: str, body: bytes, content_type: str, extra: str = "") -> None:
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: {content_type}\r\n{extra}\r\n").encode()
        if len(body) <= 64 << 10:
            self.sock.sendall(head + body)
            return
        self.sock.sendall(head)
        self.sock.sendall(memoryview(body))

    def send_hashed(self, target: str, body: memoryview, hasher: cp.DataHash, hashing: ThreadPoolExecutor) -> None:
        """PUT `body`, each piece hashed on `hashing` (one thread, so in order) while it is written:
        the hash (sha256 or BLAKE3) and SSL_write both release the GIL, so the two run side by side."""
        self.sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
                          f"Content-Type: application/octet-stream\r\n\r\n".encode())
        jobs: list[Future[object]] = []
        try:
            for start in range(0, len(body), PIECE):
                piece = body[start:start + PIECE]
                jobs.append(hashing.submit(hasher.update, piece))
                self.sock.sendall(piece)
        finally:
            for job in jobs:
                job.result()  # no hashing outlives the call (the window is reused next)

    def receive(self) -> tuple[int, str, bool]:
        """(status, body, whether the server will close the connection)."""
        status_line = self._reader.readline(_HEAD_LIMIT)
        if not status_line:
            raise ConnectionResetError("the upload server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := self._reader.readline(_HEAD_LIMIT)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        body = self._reader.read(length) if length else b""
        if len(body) != length:
            raise ConnectionResetError("the upload server's answer was cut short")
        return status, body.decode(errors="replace"), close

    def upgrade(self, context: ssl.SSLContext | None, server_name: str) -> int:
        """Ask for the upgraded extent connection; on 101 a fresh TLS handshake on the bare TCP
        connection follows (the server already let go of the first TLS session: no close_notify)."""
        self.send("POST", cp.UPGRADE_PATH, b"", "application/json",
                  f"Connection: Upgrade\r\nUpgrade: {cp.UPGRADE_TOKEN}\r\n")
        status, _text, _close = self.receive()
        if status != 101:
            return status
        raw = socket.socket(fileno=os.dup(self.sock.fileno()))
        self.close()
        raw.settimeout(TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname=server_name) if context else raw
        self._reader = self.sock.makefile("rb")
        return status

    def close(self) -> None:
        try:
            self._reader.close()
            self.sock.close()
        except OSError:
            pass


_NETWORK_ERRORS = (OSError, ssl.SSLError, ValueError, IndexError)


class CloneClient:
    def __init__(self, base_url: str, context: ssl.SSLContext | None, server_name: str | None = None, *,
                 upgrade: bool = True) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._context = context if parts.scheme == "https" else None
        self._server_name = server_name or self._host
        self._conn: _Connection | None = None
        self._data: _Connection | None = None  # the upgraded extent connection
        self._upgrade = upgrade  # until a server answers the upgrade with anything but 101
        self._outstanding = 0  # extent requests written whose answers are not read yet
        self.sent = 0  # extent bytes put on the wire (counting re-sends)
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="clone-hash")

    async def __aenter__(self) -> CloneClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._drop()
        self._hashing.shutdown(wait=True)

    def _drop(self) -> None:
        for conn in (self._conn, self._data):
            if conn is not None:
                conn.close()
        self._conn, self._data, self._outstanding = None, None, 0

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(self._host, self._port, self._context, self._server_name)
        return self._conn

    def _guarded(self, what: str, work: Any) -> Any:
        try:
            return work()
        except _NETWORK_ERRORS as e:
            self._drop()
            raise Retry(f"{what}: {type(e).__name__}: {e}") from e

    def _extent_connection(self) -> _Connection:
        """The upgraded connection when the server offers one (`cp.UPGRADE_PATH`), else the ordinary one."""
        if self._data is not None:
            return self._data
        if not self._upgrade:
            return self._connection()
        conn = _Connection(self._host, self._port, self._context, self._server_name)
        try:
            status = conn.upgrade(self._context, self._server_name)
        except BaseException:
            conn.close()
            raise
        if status == 101:
            self._data = conn
            return conn
        conn.close()
        if status == 401:
            raise _refusal(f"POST {cp.UPGRADE_PATH}", status, "")
        self._upgrade = False  # an older server: extents go over the ordinary connection
        return self._connection()

    def _answer(self, what: str, *, extent: bool = False) -> cp.State:
        status, text, close = self._guarded(
            what, lambda: (self._extent_connection() if extent else self._connection()).receive())
        self._outstanding -= 1
        if close:
            self._drop()
        if status == 200:
            return cp.State.parse(text)
        self._drop()  # answers to requests already written behind this one are of no use now
        raise _refusal(what, status, text)

    def _call(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> cp.State:
        self._drain_sync()
        self._guarded(f"{method} {path}", lambda: self._connection().send(method, path, body, content_type))
        self._outstanding += 1
        return self._answer(f"{method} {path}")

    def _drain_sync(self) -> cp.State | None:
        state = None
        while self._outstanding:
            state = self._answer(f"PUT {cp.EXTENT_PATH}", extent=True)
        return state

    def _push(self, offset: int, data: bytes) -> cp.State | None:
        target = f"{cp.EXTENT_PATH}?{cp.OFFSET_PARAM}={offset}"
        self.sent += len(data)
        self._guarded(f"PUT {target}", lambda: self._extent_connection().send("PUT", target, data,
                                                                              "application/octet-stream"))
        self._outstanding += 1
        return self._answer(f"PUT {target}", extent=True) if self._outstanding > 1 else None

    def send_extent(self, offset: int, data: memoryview,
                    algorithm: str = cp.DIGEST_ALGORITHM) -> tuple[bytes, cp.State | None]:
        """Blocking (the sender's worker thread): send an extent, hashing it as it goes; its hash (the
        clone's negotiated algorithm), and the answer to the extent sent before it when one was outstanding."""
        target = f"{cp.EXTENT_PATH}?{cp.OFFSET_PARAM}={offset}"
        hasher = cp.data_hash(algorithm)
        self.sent += len(data)
        self._guarded(f"PUT {target}",
                      lambda: self._extent_connection().send_hashed(target, data, hasher, self._hashing))
        self._outstanding += 1
        answer = self._answer(f"PUT {target}", extent=True) if self._outstanding > 1 else None
        return hasher.digest(), answer

    def drain_blocking(self) -> cp.State | None:
        """Blocking: wait for every extent sent; the last answer (None when nothing was outstanding)."""
        return self._drain_sync()

    async def begin(self, begin: cp.Begin) -> cp.State:
        return await asyncio.to_thread(self._call, "POST", cp.BEGIN_PATH, json.dumps(begin.to_json()).encode())

    async def state(self) -> cp.State:
        return await asyncio.to_thread(self._call, "GET", cp.STATE_PATH)

    async def push(self, offset: int, data: bytes) -> cp.State | None:
        """Send an extent; returns the answer to the one sent before it, if one was outstanding."""
        return await asyncio.to_thread(self._push, offset, data)

    async def drain(self) -> cp.State | None:
        """Wait for every extent sent; the last answer (None when nothing was outstanding)."""
        return await asyncio.to_thread(self._drain_sync)

    async def put(self, offset: int, data: bytes) -> cp.State:
        """Send one extent and wait for its answer."""
        await self.push(offset, data)
        state = await self.drain()
        assert state is not None
        return state

    async def finish(self, digest: str) -> cp.State:
        return await asyncio.to_thread(self._call, "POST", cp.FINISH_PATH, json.dumps({"digest": digest}).encode())


def _refusal(what: str, status: int, text: str) -> Exception:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    reason = doc.get("reason") if isinstance(doc, dict) else None
    message = str(doc.get("message")) if isinstance(doc, dict) else text.strip()
    if status == 404 and reason == "NoCloneInProgress":
        return NotBegun(message)
    if status == 401:
        return CloneRefused(f"the upload server refused the clone's client certificate ({what})", "CloneUnauthorized")
    if status >= 500 or status in (409, 429):
        return Retry(f"{what}: HTTP {status}: {message}")
    retryable = bool(doc.get("retryable")) if isinstance(doc, dict) else False
    return CloneRefused(f"{message} (HTTP {status})", str(reason or "CloneRefused"), retryable)
