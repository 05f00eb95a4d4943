"""The clone's data connection, served by a blocking thread instead of the event loop (the upgrade of
`cdi.contracts.clone_protocol`): after `POST /v1beta1/clone/upgrade` answered 101, the TCP connection
leaves aiohttp, a fresh mutual-TLS handshake runs on it, and its extent PUTs are read here with large
`recv_into` calls into a few reusable buffers, one being received while the others are hashed and written
(sha256 and pwrite release the GIL, so decryption, hashing and writing overlap on different cores).

Why: asyncio's TLS decrypts on the event loop thread through memory BIOs, record by record, and that
single thread was the clone's bottleneck. Only the framing lives here; what an extent means (order,
supersession, the digest) stays in `importer.uploadserver.clonetarget`, which this thread calls on the
event loop for every request and which calls back `ExtentBody.receive` on a worker thread for the body.
Memory: `BUFFERS` buffers of `BUFFER` bytes per connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from io import BufferedReader
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cdi.contracts import clone_protocol as cp
from importer.errors import TransferInterrupted
from importer.uploadserver.clonedisk import ClonedDisk

log = logging.getLogger(__name__)
# Small enough that a buffer is still in the CPU cache when it is hashed and copied into the page cache
# (measured: 256 KiB costs ~20% less CPU than 2 MiB, and less than 128 KiB or 512 KiB).
BUFFER = 256 << 10
BUFFERS = 4
READ_IDLE = 60.0
_HEAD_LIMIT = 64 << 10

# (offset, length, body) → (status, JSON body); runs on the event loop.
ExtentHandler = Callable[[int, int, "ExtentBody"], Coroutine[Any, Any, tuple[int, bytes]]]


class ExtentBody:
    """One connection's extent bodies, received into reusable buffers and written as they arrive."""

    def __init__(self, reader: BufferedReader[socket.SocketIO], sock: socket.socket) -> None:
        self._reader = reader
        self._sock = sock
        self._buffers = tuple(bytearray(BUFFER) for _ in range(BUFFERS))
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="clone-hash")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="clone-write")
        self.consumed = False  # the current request's body was read

    def discard(self, length: int) -> None:
        """Read and drop a body nobody needed (an extent already acknowledged)."""
        view = memoryview(self._buffers[0])
        done = 0
        while done < length:
            part = view[:min(BUFFER, length - done)]
            self._fill(part, -1, done, length)
            done += len(part)

    def abort(self) -> None:
        """Unblock a receive in progress (a newer request superseded it)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._hasher.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    def _fill(self, view: memoryview, offset: int, done: int, length: int) -> None:
        got = 0
        while got < len(view):
            try:
                n = self._reader.readinto(view[got:])
            except (OSError, ValueError) as e:
                raise TransferInterrupted(f"extent at {offset} interrupted after {done + got} of {length} bytes "
                                          f"({type(e).__name__}: {e})") from e
            if not n:
                raise TransferInterrupted(f"extent at {offset} ended after {done + got} of {length} bytes")
            got += n

    def receive(self, disk: ClonedDisk, offset: int, length: int) -> bytes:
        """Read `length` body bytes into the disk at `offset`; the sha256 of the bytes. Each buffer, once
        full, is hashed on one thread and written on another while the next buffer fills."""
        self.consumed = True
        digest = hashlib.sha256()
        busy: list[list[Future[None]]] = [[] for _ in self._buffers]
        done, turn = 0, 0
        try:
            while done < length:
                for job in busy[turn]:
                    job.result()
                view = memoryview(self._buffers[turn])[:min(BUFFER, length - done)]
                self._fill(view, offset, done, length)
                busy[turn] = [self._hasher.submit(digest.update, view),
                              self._writer.submit(disk.write_vectors, offset + done, [view])]
                done, turn = done + len(view), (turn + 1) % len(self._buffers)
        finally:
            failures = [job.exception() for jobs in busy for job in jobs]  # waits: no job outlives the call
        for error in failures:
            if error is not None:
                raise error
        return digest.digest()


def _head(reader: BufferedReader[socket.SocketIO]) -> tuple[str, str, dict[str, str]] | None:
    line = reader.readline(_HEAD_LIMIT)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (line := reader.readline(_HEAD_LIMIT)) not in (b"\r\n", b"\n"):
        if not line:
            raise ConnectionResetError("the request head was cut short")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _answer(sock: socket.socket, status: int, body: bytes, *, close: bool = False) -> None:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    connection = "Connection: close\r\n" if close else ""
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{connection}\r\n").encode()
    sock.sendall(head + body)


class StreamConnection:
    """One upgraded connection: the TLS handshake, then extent PUTs until the client goes away."""

    def __init__(self, raw: socket.socket, context: ssl.SSLContext | None, allowed: Callable[[Any], bool],
                 handle: ExtentHandler, loop: asyncio.AbstractEventLoop) -> None:
        self._raw = raw
        self._context = context
        self._allowed = allowed
        self._handle = handle
        self._loop = loop

    def start(self) -> None:
        threading.Thread(target=self._serve, name="clone-stream", daemon=True).start()

    def _serve(self) -> None:
        sock = self._raw
        try:
            sock.setblocking(True)
            sock.settimeout(READ_IDLE)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_side=True)
                if not self._allowed(sock.getpeercert()):
                    log.warning("refused an upgraded clone connection: wrong client certificate")
                    _answer(sock, 401, b'{"reason": "CloneUnauthorized", "message": "Unauthorized"}', close=True)
                    return
            self._requests(sock)
        except (OSError, ValueError, RuntimeError, CancelledError) as e:  # the client or the loop went away
            log.info("clone data connection ended: %s: %s", type(e).__name__, e)
        finally:
            sock.close()

    def _requests(self, sock: socket.socket) -> None:
        reader = BufferedReader(socket.SocketIO(sock, "rb"), 256 << 10)
        body = ExtentBody(reader, sock)
        try:
            while (head := _head(reader)) is not None:
                method, target, headers = head
                parts = urlsplit(target)
                if method != "PUT" or parts.path != cp.EXTENT_PATH:
                    _answer(sock, 404, b'{"reason": "NotFound", "message": "only extents on this connection"}',
                            close=True)
                    return
                try:
                    offset = int(parse_qs(parts.query)[cp.OFFSET_PARAM][0])
                    length = int(headers["content-length"])
                except (KeyError, ValueError, IndexError):
                    _answer(sock, 400, b'{"reason": "InvalidRequest", "message": "an extent needs an offset and a '
                                       b'Content-Length", "retryable": false}', close=True)
                    return
                body.consumed = False
                call = asyncio.run_coroutine_threadsafe(self._handle(offset, length, body), self._loop)
                status, answer = call.result()
                if status == 200 and not body.consumed:
                    body.discard(length)
                _answer(sock, status, answer, close=status != 200)
                if status != 200:
                    return  # the body may be half read: this connection's framing is lost
        finally:
            body.close()
            reader.close()
