"""The upload server's clone endpoints (the protocol is documented in `cdi.contracts.clone_protocol`): one
clone at a time, holding the same gate as uploads, written through `clonedisk.ClonedDisk`.

A clone lives from `begin` to a `finish` whose digest matched (the gate then finishes the server with
"Clone Complete", as a finished upload does) or to a failure that forgets it and releases the gate
(digest mismatch, the target refusing the data, or no request for `resume_timeout` seconds). An
extent request that arrives while an older one is still being received (its connection died silently)
supersedes it: the older one is cancelled and its bytes never count. Errors are JSON
`{"reason", "message", "retryable"}`. Mounted by `importer.uploadserver.handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, web
from aiohttp.http_exceptions import HttpProcessingError

from cdi.contracts import clone_protocol as cp
from cdi.contracts import importer_env
from cdi.contracts.termination import TerminationMessage
from importer.errors import ImportFailure, TransferInterrupted
from importer.target import discover_target
from importer.uploadserver.clonedisk import ClonedDisk, sizing_of
from importer.uploadserver.clonestream import ExtentBody, StreamConnection
from importer.uploadserver.config import UploadServerConfig
from importer.uploadserver.gate import GateClosed, ServerResult, UploadGate
from importer.uploadserver.security import client_allowed, server_context

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Receive = Callable[["CloneSession"], Coroutine[Any, Any, None]]
READ_PIECE = 1 << 20
READ_IDLE = 60.0
_MAX_VECTORS = 512  # well under IOV_MAX
_READ_ERRORS = (OSError, ClientError, HttpProcessingError, ValueError, asyncio.IncompleteReadError)


def failure(status: int, reason: str, message: str, *, retryable: bool = False) -> web.Response:
    body = json.dumps({"reason": reason, "message": message, "retryable": retryable})
    return web.Response(status=status, text=body, content_type="application/json")


def _state(session: CloneSession) -> web.Response:
    state = cp.State(session.begin.virtual_size, session.next, session.received, session.done,
                     session.digest.algorithm)
    return web.json_response(state.to_json())


@dataclass(eq=False)
class CloneSession:
    begin: cp.Begin
    disk: ClonedDisk
    digest: cp.LayoutDigest
    next: int = 0
    received: int = 0
    done: bool = False
    final_digest: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: asyncio.Task[None] | None = None
    last_seen: float = 0.0


class CloneTarget:
    def __init__(self, config: UploadServerConfig, gate: UploadGate) -> None:
        self._config = config
        self._gate = gate
        self._session: CloneSession | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._context: ssl.SSLContext | None = None

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", cp.BEGIN_PATH, self.begin), ("PUT", cp.EXTENT_PATH, self.extent),
                ("GET", cp.STATE_PATH, self.state), ("POST", cp.FINISH_PATH, self.finish),
                ("POST", cp.UPGRADE_PATH, self.upgrade)]

    def _touch(self, session: CloneSession) -> None:
        session.last_seen = asyncio.get_running_loop().time()

    async def begin(self, request: web.Request) -> web.Response:
        try:
            wanted = cp.Begin.parse(await request.json())
        except (ValueError, json.JSONDecodeError) as e:
            return failure(400, "InvalidRequest", f"not a clone begin request: {e}")
        if wanted.content_type != importer_env.CONTENT_KUBEVIRT:
            return failure(400, "CloneContentTypeNotSupported",
                           f"host-assisted clone of content type {wanted.content_type!r} is not supported: only "
                           f"{importer_env.CONTENT_KUBEVIRT!r} (disk image) volumes can be cloned")
        try:
            algorithm = wanted.negotiate()
        except ValueError as e:
            return failure(400, "InvalidRequest", str(e))
        session = self._session
        if session is not None:
            if not wanted.joins(session.begin, session.digest.algorithm):
                return failure(409, "CloneInProgress", "another clone of different parameters is in progress")
            self._touch(session)
            return _state(session)
        try:
            self._gate.acquire("clone")
        except GateClosed as e:
            return failure(e.status, "UploadServerBusy", e.message, retryable=e.status == 503)
        try:
            disk = await asyncio.to_thread(self._open, wanted)
        except ImportFailure as e:
            self._gate.release()
            return failure(400, e.reason, e.message, retryable=e.retryable)
        except OSError as e:
            self._gate.release()
            return failure(500, "CloneTargetFailed", f"cannot open the clone target: {e}", retryable=True)
        session = CloneSession(wanted, disk, cp.LayoutDigest(wanted.virtual_size, algorithm))
        self._touch(session)
        self._session = session
        self._watchdog = asyncio.create_task(self._watch(session))
        log.info("clone begun: %d bytes from a %s volume, digest %s", wanted.virtual_size,
                 wanted.source_volume_mode, algorithm)
        return _state(session)

    def _open(self, wanted: cp.Begin) -> ClonedDisk:
        target = discover_target(self._config.data_path, self._config.image_size)
        return ClonedDisk(target, wanted.virtual_size, sizing_of(self._config))

    async def state(self, _request: web.Request) -> web.Response:
        if self._session is None:
            return failure(404, "NoCloneInProgress", "no clone has begun")
        return _state(self._session)

    async def extent(self, request: web.Request) -> web.Response:
        try:
            offset = int(request.query.get(cp.OFFSET_PARAM, ""))
        except ValueError:
            if self._session is None:
                return failure(404, "NoCloneInProgress", "no clone has begun")
            return failure(400, "InvalidRequest", f"query parameter {cp.OFFSET_PARAM} must be a byte offset")
        length = request.content_length or 0
        return await self._extent(offset, length, lambda session: self._receive(session, request, offset, length))

    async def _stream_extent(self, offset: int, length: int, body: ExtentBody) -> tuple[int, bytes]:
        """An extent PUT on an upgraded connection (`clonestream`), answered as the route would be."""
        response = await self._extent(offset, length,
                                      lambda session: self._receive_stream(session, body, offset, length))
        return response.status, response.body if isinstance(response.body, bytes) else b""

    async def _extent(self, offset: int, length: int, receive: Receive) -> web.Response:
        session = self._session
        if session is None:
            return failure(404, "NoCloneInProgress", "no clone has begun")
        if not length or length > cp.MAX_EXTENT or offset < 0 or offset + length > session.begin.virtual_size:
            return failure(400, "InvalidRequest", f"an extent needs a Content-Length of 1 to {cp.MAX_EXTENT} bytes "
                                                  f"inside the image ({session.begin.virtual_size} bytes)")
        self._touch(session)
        if session.current is not None and not session.current.done():
            session.current.cancel()  # its connection died without us noticing: the newer request wins
        async with session.lock:
            if session.done or offset + length <= session.next:
                return _state(session)  # already acknowledged: re-sending is harmless
            if offset < session.next:
                return failure(409, "ExtentOverlaps", f"extent at {offset} overlaps data acknowledged up to "
                                                      f"{session.next}")
            task = asyncio.create_task(receive(session))
            session.current = task
            await asyncio.wait({task})
            if task.cancelled():
                return failure(409, "Superseded", "superseded by a newer request", retryable=True)
            error = task.exception()
            if isinstance(error, ImportFailure):
                return failure(400, error.reason, error.message, retryable=error.retryable)
            if error is not None:
                raise error
        self._touch(session)
        return _state(session)

    async def _receive_stream(self, session: CloneSession, body: ExtentBody, offset: int, length: int) -> None:
        disk = session.disk
        if offset > session.next:
            await asyncio.to_thread(disk.hole, session.next, offset - session.next)
        work = asyncio.ensure_future(asyncio.to_thread(body.receive, disk, offset, length,
                                                       session.digest.algorithm))
        try:
            data_digest = await asyncio.shield(work)
        except asyncio.CancelledError:
            body.abort()  # unblocks the receiving thread; its bytes never count
            await asyncio.wait({work})
            if not work.cancelled():
                work.exception()
            raise
        session.digest.add(offset, length, data_digest)
        session.next = offset + length
        session.received += length

    async def upgrade(self, request: web.Request) -> web.StreamResponse:
        """Hand this connection to a blocking thread for extents (`clonestream`): 101, then a fresh TLS
        handshake on the bare TCP connection. The client sends nothing more until it has the 101."""
        if request.headers.get("Upgrade", "").lower() != cp.UPGRADE_TOKEN:
            return failure(400, "InvalidRequest", f"Upgrade: {cp.UPGRADE_TOKEN} expected")
        transport = request.transport
        if transport is None:
            return failure(400, "InvalidRequest", "the connection is gone")
        bare: Any = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None) or transport
        bare.pause_reading()  # nothing of the new handshake may be read by the event loop
        response = web.Response(status=101, headers={"Connection": "Upgrade", "Upgrade": cp.UPGRADE_TOKEN})
        await response.prepare(request)
        await response.write_eof()  # aiohttp holds the head back until the first body write or the end
        async with asyncio.timeout(READ_IDLE):  # transports tell "below the high-water mark", never "empty"
            while transport.get_write_buffer_size() or bare.get_write_buffer_size():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        raw = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        bare.abort()
        context = self._stream_context()
        StreamConnection(raw, context, self._allowed, self._stream_extent, asyncio.get_running_loop()).start()
        return response

    def _stream_context(self) -> ssl.SSLContext | None:
        if self._config.tls is None:
            return None
        if self._context is None:
            self._context = server_context(self._config.tls)
        return self._context

    def _allowed(self, peercert: Any) -> bool:
        return client_allowed(peercert, self._config.client_name)

    async def _receive(self, session: CloneSession, request: web.Request, offset: int, length: int) -> None:
        disk = session.disk
        if offset > session.next:
            await asyncio.to_thread(disk.hole, session.next, offset - session.next)
        data_hash = cp.data_hash(session.digest.algorithm)
        position = offset
        pending: asyncio.Future[None] | None = None

        def absorb(at: int, pieces: list[bytes]) -> None:
            disk.write_vectors(at, pieces)  # no copy: the pieces as aiohttp received them
            for piece in pieces:
                data_hash.update(piece)

        try:
            async for batch in _batches(request, offset, length):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(absorb, position, batch))
                position += sum(len(piece) for piece in batch)
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait({pending})  # never leave a write running behind a newer request
        if position != offset + length:
            raise TransferInterrupted(f"extent at {offset} ended after {position - offset} of {length} bytes")
        session.digest.add(offset, length, data_hash.digest())
        session.next = offset + length
        session.received += length

    async def finish(self, request: web.Request) -> web.Response:
        session = self._session
        if session is None:
            return failure(404, "NoCloneInProgress", "no clone has begun")
        try:
            claimed = str((await request.json())["digest"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            return failure(400, "InvalidRequest", f"a finish request is {{\"digest\": \"<hex>\"}}: {e}")
        async with session.lock:
            if session.done:
                return _state(session) if claimed == session.final_digest else failure(
                    409, "CloneCompleted", "the clone already completed with another digest")
            return await self._complete(session, claimed)

    async def _complete(self, session: CloneSession, claimed: str) -> web.Response:
        size = session.begin.virtual_size
        try:
            await asyncio.to_thread(session.disk.hole, session.next, size - session.next)
            ours = session.digest.hexdigest()
            if claimed != ours:
                raise DigestMismatch(f"clone digest mismatch: the source sent {claimed}, the target received "
                                     f"{ours}; the clone starts over")
            final = await asyncio.to_thread(session.disk.commit)
        except ImportFailure as e:
            await self._forget(session)
            return failure(400, e.reason, e.message, retryable=e.retryable)
        except OSError as e:
            await self._forget(session)
            return failure(500, "CloneTargetFailed", f"cannot complete the clone: {e}", retryable=True)
        session.done, session.final_digest, session.next = True, claimed, size
        log.info("clone complete: %d data bytes received, disk of %d bytes", session.received, final)
        self._gate.finish(ServerResult(0, TerminationMessage(message=cp.CLONE_COMPLETE,
                                                             preallocation_applied=self._config.preallocation)))
        return _state(session)

    async def _forget(self, session: CloneSession) -> None:
        if self._session is session:
            self._session = None
        if session.current is not None and not session.current.done():
            session.current.cancel()
        await asyncio.to_thread(session.disk.discard)
        self._gate.release()

    async def _watch(self, session: CloneSession) -> None:
        """Abandon a clone nobody has touched for `resume_timeout` seconds (its source is gone)."""
        loop = asyncio.get_running_loop()
        while self._session is session and not session.done:
            idle = loop.time() - session.last_seen
            if idle >= self._config.resume_timeout and (session.current is None or session.current.done()):
                log.warning("clone abandoned: no request for %.0fs", idle)
                await self._forget(session)
                return
            await asyncio.sleep(max(0.1, self._config.resume_timeout - idle))

    async def close(self) -> None:
        session = self._session
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if session is not None and not session.done:
            await self._forget(session)


async def _batches(request: web.Request, offset: int, length: int) -> AsyncIterator[list[bytes]]:
    """The body as lists of received pieces adding up to about READ_PIECE bytes; a body that stops
    arriving, or ends early, is `TransferInterrupted`."""
    batch: list[bytes] = []
    size = received = 0
    while True:
        try:
            async with asyncio.timeout(READ_IDLE):
                piece = await request.content.readany()
        except TimeoutError as e:
            raise TransferInterrupted(f"extent at {offset}: no data for {READ_IDLE:.0f}s after {received} of "
                                      f"{length} bytes") from e
        except _READ_ERRORS as e:
            raise TransferInterrupted(f"extent at {offset} interrupted after {received} of {length} bytes "
                                      f"({type(e).__name__}: {e})") from e
        if not piece:
            break
        batch.append(piece)
        size += len(piece)
        received += len(piece)
        if size >= READ_PIECE or len(batch) >= _MAX_VECTORS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class DigestMismatch(ImportFailure):
    reason = "CloneDigestMismatch"
    retryable = True
