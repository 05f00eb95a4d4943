"""The clone's data connection, served by a blocking thread instead of the event loop (the upgrade of
`cdi.contracts.clone_protocol`): after `POST /v1beta1/clone/upgrade` answered 101, the TCP connection
leaves aiohttp, a fresh mutual-TLS handshake runs on it (`clonetls`: OpenSSL over memory BIOs, the
socket read in large pieces), and its extent PUTs are decrypted here straight into a few reusable
page-aligned slots, one being received while the others are hashed and written (sha256, BLAKE3 and
pwrite release the GIL, so decryption, hashing and writing overlap on different cores). The slots are
page-aligned so that `ClonedDisk.write_aligned` can hand them to the target with O_DIRECT: no copy
into the page cache, no writeback left for the end.

Why: asyncio's TLS decrypts on the event loop thread through memory BIOs, record by record, and that
single thread was the clone's bottleneck. Only the framing lives here; what an extent means (order,
supersession, the digest) stays in `importer.uploadserver.clonetarget`, which this thread calls on the
event loop for every request and which calls back `ExtentBody.receive` on a worker thread for the body.
Memory: `SLOTS` slots of `SLOT` bytes per connection.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cdi.contracts import clone_protocol as cp
from importer.errors import TransferInterrupted
from importer.uploadserver.clonedisk import DIRECT_ALIGN, ClonedDisk
from importer.uploadserver.clonetls import Channel, TlsChannel

log = logging.getLogger(__name__)
# A slot is hashed and written as one piece: large enough that the per-piece thread hand-offs cost
# nothing, small enough (with its neighbours) to stay in the CPU's cache between decryption and hashing.
SLOT = 1 << 20
SLOTS = 4
READ_IDLE = 60.0
_HEAD_LIMIT = 64 << 10

# (offset, length, body) → (status, JSON body); runs on the event loop.
ExtentHandler = Callable[[int, int, "ExtentBody"], Coroutine[Any, Any, tuple[int, bytes]]]


class Wire:
    """Reads a connection: request heads line by line, bodies straight into the caller's memory (only
    what the head's last read took beyond the head is copied; the rest goes socket → slot)."""

    def __init__(self, sock: Channel) -> None:
        self.sock = sock
        self._pending = bytearray()  # bytes received beyond what was consumed

    def readline(self, limit: int = _HEAD_LIMIT) -> bytes:
        while (end := self._pending.find(b"\n")) < 0:
            if len(self._pending) >= limit:
                raise ValueError(f"a request head line is longer than {limit} bytes")
            chunk = self.sock.recv(16 << 10)
            if not chunk:
                line = bytes(self._pending)
                self._pending.clear()
                return line
            self._pending += chunk
        line = bytes(self._pending[:end + 1])
        del self._pending[:end + 1]
        return line

    def take(self, view: memoryview) -> int:
        """Copy into `view` what was received beyond the head (a body then continues from the socket)."""
        n = min(len(view), len(self._pending))
        if n:
            view[:n] = self._pending[:n]
            del self._pending[:n]
        return n


class ExtentBody:
    """One connection's extent bodies, received into reusable slots and written as they arrive."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._slots = tuple(mmap.mmap(-1, SLOT) for _ in range(SLOTS))  # page-aligned, for O_DIRECT
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="clone-hash")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="clone-write")
        self.consumed = False  # the current request's body was read

    def discard(self, length: int) -> None:
        """Read and drop a body nobody needed (an extent already acknowledged)."""
        view = memoryview(self._slots[0])
        done = 0
        while done < length:
            part = view[:min(SLOT, length - done)]
            self._fill(part, -1, done, length)
            done += len(part)

    def abort(self) -> None:
        """Unblock a receive in progress (a newer request superseded it)."""
        try:
            self._wire.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._hasher.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        for slot in self._slots:
            try:
                slot.close()
            except BufferError:  # a view is still referenced (a traceback's frame): the collector frees it
                pass

    def _fill(self, view: memoryview, offset: int, done: int, length: int) -> None:
        got = self._wire.take(view)
        recv_into = self._wire.sock.recv_into  # one call per TLS record (16 KiB): kept lean
        try:
            while got < len(view):
                n = recv_into(view[got:])
                if not n:
                    raise TransferInterrupted(f"extent at {offset} ended after {done + got} of {length} bytes")
                got += n
        except (OSError, ValueError) as e:
            raise TransferInterrupted(f"extent at {offset} interrupted after {done + got} of {length} bytes "
                                      f"({type(e).__name__}: {e})") from e

    def receive(self, disk: ClonedDisk, offset: int, length: int, algorithm: str = cp.DIGEST_ALGORITHM) -> bytes:
        """Read `length` body bytes into the disk at `offset`; their hash (`cp.data_hash(algorithm)`, the
        clone's negotiated digest). Each slot, once full, is hashed on one thread and written on another
        while the next slot fills. Slots after the first start at DIRECT_ALIGN-aligned offsets of the image
        (the first is cut short to get there), so an extent that starts unaligned still goes around the
        page cache from its second slot on."""
        self.consumed = True
        digest = cp.data_hash(algorithm)
        busy: list[list[Future[object]]] = [[] for _ in self._slots]
        done, turn = 0, 0
        first = SLOT - offset % DIRECT_ALIGN if offset % DIRECT_ALIGN else SLOT
        try:
            while done < length:
                for job in busy[turn]:
                    job.result()
                view = memoryview(self._slots[turn])[:min(first if done == 0 else SLOT, length - done)]
                self._fill(view, offset, done, length)
                busy[turn] = [self._hasher.submit(digest.update, view),
                              self._writer.submit(disk.write_aligned, offset + done, [view])]
                done, turn = done + len(view), (turn + 1) % len(self._slots)
        finally:
            failures = [job.exception() for jobs in busy for job in jobs]  # waits: no job outlives the call
        for error in failures:
            if error is not None:
                raise error
        return digest.digest()


def _head(wire: Wire) -> tuple[str, str, dict[str, str]] | None:
    line = wire.readline()
    if not line:
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (line := wire.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise ConnectionResetError("the request head was cut short")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _answer(sock: Channel, status: int, body: bytes, *, close: bool = False) -> None:
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
        sock: Channel = self._raw
        try:
            self._raw.setblocking(True)
            self._raw.settimeout(READ_IDLE)
            if self._context is not None:
                sock = tls = TlsChannel(self._raw, self._context)
                tls.handshake()
                if not self._allowed(tls.getpeercert()):
                    log.warning("refused an upgraded clone connection: wrong client certificate")
                    _answer(sock, 401, b'{"reason": "CloneUnauthorized", "message": "Unauthorized"}', close=True)
                    return
            self._requests(sock)
        except (OSError, ValueError, RuntimeError, CancelledError) as e:  # the client or the loop went away
            log.info("clone data connection ended: %s: %s", type(e).__name__, e)
        finally:
            sock.close()

    def _requests(self, sock: Channel) -> None:
        wire = Wire(sock)
        body = ExtentBody(wire)
        try:
            while (head := _head(wire)) is not None:
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
