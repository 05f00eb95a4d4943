"""Resumable uploads (ours, beside upstream's single-stream endpoints): one image sent as offset-addressed
chunks, any of which may be cut off and sent again.

Protocol (paths in `cdi.contracts.upload_protocol`; `/v1beta1/upload-archive-chunk` for tar archives):

    GET|HEAD /v1beta1/upload-chunk        200, `X-Upload-Offset: N` (the next byte expected) and JSON
                                          {"offset", "phase", "message", "maxChunk"}; phase is Idle,
                                          Receiving, Validating, Processing, Succeeded or Failed
    PUT /v1beta1/upload-chunk?offset=N[&final=true]   body = bytes [N, N+len) with Content-Length
                                          (411 without, 413 above `MAX_CHUNK`; an optional
                                          `X-Upload-Total` on the first chunk sizes progress)
        200  chunk consumed; `X-Upload-Offset` is the new expected offset
        409  N is past the expected offset (nothing consumed; resend from `X-Upload-Offset`), the
             request was superseded by a newer one, or the upload is already complete
        400/500  the image was refused / processing failed (upstream's mapping); the session is over,
             `X-Upload-Offset: 0`, and a PUT at offset 0 starts a fresh upload (a retry)
        final=true ends the stream after this chunk (the body may be empty) and answers like
        upload-async: 200 once the image passed validation (conversion finishes in the background),
        202 if validation is still running after `FINAL_WAIT` (send the final PUT again, or poll GET)
    DELETE /v1beta1/upload-chunk          abandon the upload in progress (before it was validated)

A PUT at an offset below the expected one is idempotent: the bytes already consumed are read and
skipped, the rest are fed, so a client resumes by asking for the offset (or reading it from a 409)
and re-sending from there, at most one chunk again per interruption.

Durability: a chunk is acknowledged only when all its bytes have been consumed by the upload's one
pipeline (the transfer thread's decompressor and writer, through a queue of a few pieces), which lives
as long as the upload-server process and is independent of any connection: a dropped client, proxy or
connection never loses acknowledged bytes, and the server waits `resume_timeout` (30 min by default) for
the next chunk. Across an upload-server restart (the process or pod killed): for a raw image every chunk
is synced with a checkpoint record on the volume before its 200 (`importer.uploadserver.durable`), so a
new server reports the last acknowledged offset and continues there, and the client re-sends at most the
chunk it was sending; a compressed image too: its decoder restarts at the last gzip DEFLATE block, xz
block or zstd frame boundary that was synced, fed first the compressed bytes past it that the server
kept (`importer.uploadserver.wiretail`, fsynced before each 200; a single-block xz or single-frame zstd
restarts from byte 0 that way, up to `TAIL_LIMIT`); a qcow2 (converted while it streams) continues where
its chunk ended too, its converter rebuilt from the image's ranges the server kept beside the record
(`importer.checkpointrestart`, `importer.checkpointranges`; on a Block volume they are kept on the pod's
scratch volume); a tar archive (`upload-archive-chunk`) continues its extraction from the record of a
tar member's header or of a place inside a regular file (`importer.archivecheckpoint`), by the raw or
compressed rule; a compressed qcow2 (qcow2.gz, .xz, .zst) by the compressed rule, its converter rebuilt
from the ranges kept in the same way after the decompressor restarts (`importer.compressedqcow2`); a
qcow2 (compressed or not) onto a Block volume of a pod without scratch starts over, and the reason is
logged and put in the termination message (a compressed raw image there has no wire tail: it continues
at its record).
At most one request feeds at a time; a newer request supersedes (cancels) an older one that may still
be stuck on a half-dead connection. Memory per upload stays at a few MiB whatever the chunk size.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cdi.contracts import upload_protocol as up
from importer.checkpoint import Checkpoint, CheckpointCorrupt, CheckpointStore, RecordStore
from importer.checkpointdevice import DEVICE_TAIL_BASE, DeviceTailStore
from importer.checkpointranges import RANGE_STORE_LIMIT, LocalRanges, RangeStore
from importer.checkpointrestart import rebuild
from importer.errors import ConfigurationError, TransferInterrupted
from importer.pipeline import CheckpointSettings
from importer.resume import Decision, Outcome
from importer.uploadserver.bodies import CountedBody
from importer.uploadserver.durable import (
    ChunkCheckpointer,
    Recovered,
    describe_upload,
    observe,
    refuse_resume,
    upload_identity,
)
from importer.uploadserver.feed import ChunkFeed, FeedClosed
from importer.uploadserver.gate import GateClosed, GateState, UploadGate
from importer.uploadserver.processing import Processing, Processor, http_failure
from importer.uploadserver.wiretail import Found, WireTail

log = logging.getLogger(__name__)

FINAL_WAIT = 25.0
CHUNK_READ_IDLE = 120.0


class Phase(enum.StrEnum):
    IDLE = "Idle"
    RECEIVING = "Receiving"
    VALIDATING = "Validating"
    PROCESSING = "Processing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class Session:
    feed: ChunkFeed
    processing: Processing
    closer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    feeding: asyncio.Task[None] | None = None
    checkpointer: ChunkCheckpointer | None = None

    def supersede(self) -> None:
        if self.feeding is not None:
            self.feeding.cancel()


class ResumableUploads:
    def __init__(self, processor: Processor, gate: UploadGate, resume_timeout: float,
                 settle: Callable[[Processing], None], range_limit: int = RANGE_STORE_LIMIT) -> None:
        self._processor = processor
        self._range_limit = range_limit
        self._gate = gate
        self._resume_timeout = resume_timeout
        self._settle = settle
        self._session: Session | None = None
        found = processor.record_store()
        self._store: RecordStore | None = found[0] if found is not None else None
        self._earlier = found is not None  # until this server starts a pipeline, the volume is an earlier one's
        self._tail = self._wire_tail()
        recovered = self._recovery()
        if recovered is not None and recovered.message:
            log.info("%s", recovered.message)
        if recovered is not None and recovered.kept is not None and recovered.kept.problem:
            log.warning("the compressed bytes kept beside the checkpoint end at byte %d: %s", recovered.kept.end,
                        recovered.kept.problem)

    async def handle(self, request: web.Request, archive: bool) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return self._reply(200)
        if request.method == "PUT":
            return await self._put(request, archive)
        if request.method == "DELETE":
            return await self._delete()
        return web.Response(status=404)

    def _state(self) -> tuple[int, Phase, int, str]:
        """(HTTP status, phase, expected offset, message) of the current or last upload."""
        session = self._session
        if session is None:
            done = self._gate.state is GateState.DONE
            recovered = self._recovery() if not done else None
            if recovered is not None and recovered.record is not None:
                return 200, Phase.RECEIVING, recovered.offset, ""
            return 200, Phase.SUCCEEDED if done else Phase.IDLE, 0, ""
        task, feed = session.processing.task, session.feed
        if task.done():
            error = None if task.cancelled() else task.exception()
            if error is None:
                return 200, Phase.SUCCEEDED, feed.offset, up.UPLOAD_COMPLETE
            status, message = http_failure(error)
            return status, Phase.FAILED, 0, message
        if session.processing.validated.is_set():
            return 200, Phase.PROCESSING, feed.offset, ""
        return (202, Phase.VALIDATING, feed.offset, "") if feed.ended else (200, Phase.RECEIVING, feed.offset, "")

    def _reply(self, status: int | None = None, message: str = "") -> web.Response:
        code, phase, offset, note = self._state()
        body: dict[str, Any] = {"offset": offset, "phase": phase.value, "message": message or note,
                                "maxChunk": up.MAX_CHUNK}
        return web.json_response(body, status=status or code, headers={up.OFFSET_HEADER: str(offset),
                                                                       up.MAX_CHUNK_HEADER: str(up.MAX_CHUNK)})

    def _live(self) -> Session | None:
        session = self._session
        return session if session is not None and not session.processing.task.done() else None

    def _recovery(self) -> Recovered | None:
        """What an earlier server left, read again each time (a single-request upload in between removes
        it); None once this server started a pipeline of its own."""
        found = self._processor.record_store() if self._earlier else None
        return observe(*found, self._tail) if found is not None else None

    def _wire_tail(self) -> WireTail | None:
        """Where a compressed upload keeps the bytes past its record (`importer.uploadserver.wiretail`):
        beside a Filesystem volume's record, on the pod's scratch volume for a Block volume's."""
        store = self._store
        if isinstance(store, CheckpointStore):
            return WireTail(store.path)
        if isinstance(store, DeviceTailStore) and store.ranges_path is not None:
            return WireTail(store.ranges_path.with_name(DEVICE_TAIL_BASE))
        return None

    async def _start(self, request: web.Request, archive: bool, offset: int) -> Session:
        """A new pipeline: continuing the earlier server's record when `offset` is its offset, else from 0."""
        self._gate.acquire("resumable upload")
        try:
            total_text = request.headers.get(up.TOTAL_HEADER, "")
            total = int(total_text) if total_text.isdigit() else None
            resume, note, kept = self._resume_for(archive, total, offset)
            restart = None
            if resume is not None and resume.format == "qcow2":
                ranges = self._ranges()
                restart, why = await rebuild(resume, LocalRanges(ranges)) if ranges is not None else \
                    (None, "the image's tables were not kept beside the checkpoint")
                if why is not None:
                    resume, note, kept = None, Decision.over(why), None
            kept = kept if resume is not None and kept is not None and kept.end > resume.wire_offset else None
            if resume is not None and resume.wire_offset == 0:
                resume = None  # no restart point yet: the pipeline starts from byte 0, fed from the kept bytes
            chunks = self._chunks(kept, resume.wire_offset if resume is not None else 0)
        except BaseException:
            self._gate.release()
            raise
        feed = ChunkFeed(self._resume_timeout)
        feed.offset = kept.end if kept is not None else resume.wire_offset if resume is not None else 0
        checkpointer = ChunkCheckpointer(self._store, asyncio.get_running_loop(), self._ranges()) \
            if self._store else None
        settings = CheckpointSettings(checkpointer.store, 0, 0.0, True, resume, checkpointer, restart) \
            if checkpointer else None
        try:
            processing = self._processor.start(chunks(feed), archive=archive, total=total,
                                               description="resumable upload", checkpoints=settings,
                                               identity=upload_identity(archive, total))
        except BaseException:
            self._gate.release()
            raise
        processing.resume_note = note
        processing.resume_text = describe_upload(note, kept) if note is not None else ""
        self._earlier = False  # a record is continued at most once; the pipeline now owns the volume
        processing.task.add_done_callback(lambda task: self._ended(task, settings))
        self._settle(processing)
        session = Session(feed, processing, checkpointer=checkpointer)
        session.closer = asyncio.create_task(self._close_when_done(session))
        self._session = session
        return session

    def _ranges(self) -> RangeStore | None:
        """Where a qcow2 upload keeps the ranges its restart reads again: beside a Filesystem volume's
        record, or on the pod's scratch volume for a Block volume (whose records live in its last MiB,
        with no room for them); None for a Block volume without scratch."""
        store = self._store
        if isinstance(store, CheckpointStore):
            return RangeStore.beside(store.path, self._range_limit)
        if isinstance(store, DeviceTailStore) and store.ranges_path is not None:
            return RangeStore(store.ranges_path, self._range_limit)
        return None

    def _resume_for(self, archive: bool, total: int | None, offset: int
                    ) -> tuple[Checkpoint | None, Decision | None, Found | None]:
        """The record to continue, what to tell about it (None, None: nothing from an earlier server) and
        the compressed bytes kept past it."""
        recovered = self._recovery()
        if recovered is None or recovered.decision.outcome is Outcome.FRESH:
            return None, None, None
        record = recovered.record
        if record is None:
            return None, recovered.decision, None
        if not record.wire_offset <= offset <= recovered.offset:
            return None, Decision.over(f"the client started again at byte {offset}, not at {recovered.offset}"), None
        if why := refuse_resume(record, archive, total if total is not None else record.identity.size):
            return None, Decision.over(f"this is another upload: {why}"), None
        return record, recovered.decision, recovered.kept

    def _chunks(self, kept: Found | None, start: int) -> Callable[[ChunkFeed], AsyncIterator[bytes]]:
        """The pipeline's source: the kept bytes past the record first (continuing their files), then the
        client's, each recorded in the wire tail as the pipeline takes it (a fresh upload's tail starts empty)."""
        tail = self._tail
        if tail is None:
            return lambda feed: feed.chunks()
        if kept is None:
            tail.reset(start)  # what an earlier server kept is of no use (or there was none)
            return lambda feed: tail.recording(feed.chunks(), lambda: feed.offset)
        tail.adopt(kept)

        async def chunks(feed: ChunkFeed) -> AsyncIterator[bytes]:
            async for piece in tail.replay(kept):
                yield piece
            async for piece in tail.recording(feed.chunks(), lambda: feed.offset):
                yield piece

        return chunks

    def _ended(self, task: asyncio.Task[Any], settings: CheckpointSettings | None) -> None:
        """The pipeline ended: its wire tail goes, unless a record remains to be continued (the server
        was stopped, and keeps its checkpoint)."""
        if self._tail is None:
            return
        remains = False
        if settings is not None and (task.cancelled() or task.exception() is not None):
            with contextlib.suppress(CheckpointCorrupt, OSError):
                remains = settings.store.load() is not None
        if not remains:
            self._tail.clear()
        else:
            self._tail.close()

    async def _close_when_done(self, session: Session) -> None:
        await asyncio.wait({session.processing.task})
        await session.feed.close()
        if session.feed.abandoned and self._session is session:
            self._forget()

    def _forget(self) -> None:
        """An upload the client abandoned (DELETE, or no chunk for `resume_timeout`): its partial disk,
        record and kept ranges go, as after a failure, rather than wait for a restart that will not come."""
        if self._store is not None:
            self._store.clear()
        if self._tail is not None:
            self._tail.clear()
        self._processor.target().discard()

    async def _put(self, request: web.Request, archive: bool) -> web.Response:
        try:
            offset = int(request.query.get(up.OFFSET_PARAM, ""))
        except ValueError:
            return self._reply(400, f"query parameter {up.OFFSET_PARAM} must be a byte offset")
        final = request.query.get(up.FINAL_PARAM, "").lower() in ("true", "1")
        length = request.content_length
        if length is None:
            return self._reply(411, "chunks need a Content-Length")
        if length > up.MAX_CHUNK:
            return self._reply(413, f"chunks may be at most {up.MAX_CHUNK} bytes")
        session = self._live()
        if session is None:
            recovered = self._recovery()
            record = recovered.record if recovered is not None else None
            resuming = recovered is not None and record is not None and record.wire_offset <= offset <= recovered.offset
            if offset != 0 and not resuming:  # a failed upload reports its failure, anything else 409
                failed = self._session is not None and self._gate.state is not GateState.DONE
                return self._reply(None if failed else 409)
            try:
                session = await self._start(request, archive, offset)
            except GateClosed as e:
                return self._reply(e.status, e.message)
            except (ConfigurationError, OSError) as e:
                return self._reply(500, f"Saving stream failed: {e}")
        error = await self._feed(session, request, offset, length, final)
        if error is not None:
            return self._reply(error[0], error[1])
        if final:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.processing.until_validated(), FINAL_WAIT)
        code, phase, _, _ = self._state()
        if phase is Phase.PROCESSING:
            session.processing.acknowledged = True
        return self._reply(code)

    async def _feed(self, session: Session, request: web.Request, offset: int, length: int,
                    final: bool) -> tuple[int, str] | None:
        """Feed this request's bytes past the expected offset; an error (status, message) or None."""
        session.supersede()
        async with session.lock:
            expected, feed = session.feed.offset, session.feed
            if offset > expected:
                return 409, f"chunk starts at {offset} but the upload continues at {expected}"
            if feed.ended and offset + length > expected:
                return 409, f"the upload already ended at offset {expected}"
            if final and offset + length < expected:
                return 409, f"a final chunk must end at or after {expected}, the bytes already received"
            if session.checkpointer is not None:  # a record is due once the pipeline has read this chunk
                session.checkpointer.feeding(expected, offset + length)
            body = CountedBody(request.content.read, idle_timeout=CHUNK_READ_IDLE)
            task = asyncio.create_task(self._consume(feed, body, expected - offset))
            session.feeding = task
            try:
                await asyncio.wait({task})
            finally:
                task.cancel()  # only matters when this handler itself is cancelled (server shutdown)
                if session.feeding is task:
                    session.feeding = None
            if task.cancelled():
                return 409, "superseded by a newer request for this upload"
            error = task.exception()
            if isinstance(error, TransferInterrupted):
                return 400, error.message
            if error is not None and not isinstance(error, FeedClosed):
                raise error
            if final and error is None and not feed.ended:
                await feed.end()
            elif error is None and session.checkpointer is not None:
                await session.checkpointer.until_durable(expected, feed.offset, session.processing.task)
                await self._seal(session.checkpointer, feed.offset)
        return None

    async def _seal(self, checkpointer: ChunkCheckpointer, reached: int) -> None:
        """A compressed upload's bytes up to `reached` made durable in its wire tail before the 200; a raw or
        qcow2 upload's records cover every acknowledged byte, so their tail goes once the format is known."""
        tail = self._tail
        if tail is None or not tail.enabled:
            return
        if checkpointer.began and (checkpointer.raw or checkpointer.qcow2 or not checkpointer.active):
            tail.discard(None)
            return
        await tail.seal(reached, checkpointer.durable if checkpointer.began else 0)

    @staticmethod
    async def _consume(feed: ChunkFeed, body: CountedBody, skip: int) -> None:
        async for piece in body.pieces():
            if skip >= len(piece):
                skip -= len(piece)
                continue
            await feed.offer(piece[skip:] if skip else piece)
            skip = 0

    async def _delete(self) -> web.Response:
        session = self._live()
        if session is not None:
            if session.processing.validated.is_set():
                return self._reply(409, "the upload was already validated and is being processed")
            session.supersede()
            await session.feed.abort("upload cancelled by the client")
            await asyncio.wait({session.processing.task})
            self._session = None
            self._forget()
        return self._reply(200)

    async def close(self) -> None:
        """Stop a session that is still receiving (server shutdown), so its pipeline ends cleanly."""
        session = self._live()
        if session is not None and not session.feed.ended:
            session.supersede()
            await session.feed.abort("the upload server is stopping")
            await asyncio.wait({session.processing.task})
