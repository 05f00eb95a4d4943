"""Resumable uploads that survive an upload-server restart: a checkpoint at every chunk's end before
the chunk is acknowledged, and, in a new server process, the decision whether to continue the
recorded upload.

The transfer thread's writer calls the importer's checkpoint hook (`importer.checkpointing`) after
each write; `ChunkCheckpointer` makes a record due whenever the pipeline has read up to the end of
the chunk being fed (`flush_at`), rather than every N bytes (compressed: at the first restart point
at or past the start of the chunk being fed, `floor`). For a raw image the hook then syncs the
partial disk and writes the record, and `until_durable` lets the chunk's request wait for it before
its 200, so a killed server loses no acknowledged byte and the client re-sends at most the chunk it
was sending. Compressed images are checkpointed only where their decoder can restart: gzip at any
DEFLATE block boundary (`importer.gzipblocks`, single-member files included), xz at a block and zstd
at a frame boundary. Their requests wait until a record at or past the chunk's start exists (or the
pipeline read the whole chunk without meeting a restart point, or `COMPRESSED_WAIT` passed), and then
until the compressed bytes past the record up to the chunk's end are fsynced in the upload's wire tail
(`importer.uploadserver.wiretail`, beside the record; a Block volume's on the pod's scratch volume).
A new server (`observe`) restarts the decoder at the record, feeds it the kept bytes first and reports
where they end, so the client re-sends at most the chunk it was sending, as for raw images. A record
at wire offset 0 (a single-block xz or single-frame zstd has no restart point before its end) is
continued too while bytes from 0 are kept: the new pipeline starts from the image's first byte, fed
from the tail. Without the tail (a damaged one is detected by its entries' CRCs; past `TAIL_LIMIT`
bytes it is given up, with the reason logged; a Block volume without scratch has none) a restart
continues at the record: at most about one chunk plus one block/frame back (a single-block xz or
single-frame zstd starts over). qcow2 uploads (converted while they stream) are checkpointed at the
chunk's end too: the converter's state at the last host cluster boundary, the bytes read past it in
the record's carry, and, since a restart cannot ask the client for the image's tables again, the
ranges it reads again kept beside the record first (`importer.checkpointranges`; on a Block volume,
on the pod's scratch volume); without a place for them (a Block volume and no scratch) they start
over, with the reason.
A compressed qcow2 (qcow2.gz, .xz, .zst) follows the compressed rule: its record pairs the first
decoder restart point at or past the chunk's start with the converter's next host cluster boundary
(`importer.compressedcheckpoints`), its ranges kept beside the record in the same way.

Archives (content type `archive`) are checkpointed by the same rules, raw or compressed, at the marks of
their tar stream (`importer.archivecheckpoint`: a member's header, or a place inside a regular file).

The source identity of an upload is the endpoint and the size the client announced
(`X-Upload-Total`): a resumed upload must announce the same size. Called by
`importer.uploadserver.resumable`; records and stores are `importer.checkpoint`, the decision rules
`importer.resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from importer import hashstate
from importer.checkpoint import Checkpoint, CheckpointCorrupt, Checkpointer, RecordStore, SourceIdentity
from importer.checkpointranges import RangeStore
from importer.formats import PEEK_SIZE
from importer.resume import Decision, Observed, Outcome, decide
from importer.uploadserver.wiretail import Found, WireTail

log = logging.getLogger(__name__)

DURABLE_WAIT = 60.0  # a safety net: a raw pipeline reaches the chunk's end within a few writes
COMPRESSED_WAIT = 5.0  # a chunk ending inside a member's trailer may produce no write to look at
BEGIN_WITHIN = 4 * PEEK_SIZE  # past this many bytes a pipeline has detected the format (decompressed, if need be)


def upload_identity(archive: bool, total: int | None) -> SourceIdentity:
    """What a record of this upload is checked against when a new server continues it."""
    kind = "upload-archive" if archive else "upload"
    return SourceIdentity(f"{kind}:resumable", size=total, version=f"{kind}:{total}")


class ChunkCheckpointer(Checkpointer):
    """A record is due when the pipeline has read up to `flush_at` (the end of the chunk being fed).
    `due` and `save` run on the transfer thread; `flush_at` and `until_durable` on the event loop."""

    def __init__(self, store: RecordStore, loop: asyncio.AbstractEventLoop, ranges: RangeStore | None = None) -> None:
        super().__init__(store, every_bytes=1 << 62, every_seconds=math.inf)
        self._loop = loop
        self._changed = asyncio.Event()
        self.flush_at = 0
        self.floor = 0
        self.seen = 0
        self.durable = 0
        self.skipped = 0  # a qcow2 record was due up to here and could not be taken (the log says why)
        self.raw = False
        self.qcow2 = False
        self.began = False
        self.ranges = ranges

    def begin(self, base: Checkpoint) -> None:
        super().begin(base)
        self.durable = base.wire_offset
        self.began = True
        plain = base.compression is None and base.not_resumable is None
        self.raw = plain and base.format != "qcow2"
        self.qcow2 = plain and base.format == "qcow2"
        self._wake()

    def due(self, wire_offset: int) -> bool:
        self.seen = wire_offset
        if not self.raw:
            self._wake()  # a compressed chunk's request may wait for this
        if not self.active or wire_offset <= self.durable:
            return False
        if self.raw or self.qcow2:
            return wire_offset >= self.flush_at
        # compressed: the first restart point the decoder reaches at or past the chunk being fed began
        return self.durable < self.floor <= wire_offset

    def feeding(self, start: int, end: int) -> None:
        """A request feeds bytes [start, end): when to make the next record (event loop)."""
        self.floor = max(self.floor, start)
        self.flush_at = max(self.flush_at, end)

    def skip(self, wire_offset: int) -> None:
        self.skipped = max(self.skipped, wire_offset)
        self._wake()

    def save(self, wire_offset: int, target_offset: int, carry: bytes, hash_state: bytes | None,
             started: float, decoder_state: bytes = b"") -> None:
        super().save(wire_offset, target_offset, carry, hash_state, started, decoder_state)
        self.durable = wire_offset
        self._wake()

    async def until_durable(self, start: int, end: int, pipeline: asyncio.Future[Any]) -> bool:
        """Before a chunk [start, end) is acknowledged: wait until a record covers it (raw: all of it;
        compressed: a restart point at or past `start`, or the pipeline read all of it without meeting
        one; qcow2: all of it, the bytes past the last cluster boundary in the record's carry, unless
        no record could be taken there). False when it was not waited for: the pipeline ended, is
        still detecting the format within the image's first bytes, is not checkpointed (twice-compressed archives,
        qcow2 onto a Block volume without scratch), or the wait timed out. A pipeline that has the bytes to
        detect the format but has not written its first record yet (the transfer thread lags behind
        the queue of pieces) is waited for."""
        if not self.began and end >= BEGIN_WITHIN:
            await self._wait(lambda: self.began, COMPRESSED_WAIT, pipeline)
        if not self.began or not self.active:
            return False
        limit = DURABLE_WAIT if self.raw or self.qcow2 else COMPRESSED_WAIT
        if await self._wait(lambda: self.active and self._covered(start, end), limit, pipeline):
            return not self.qcow2 or self.durable >= end  # qcow2: False when no record could be taken there
        if (self.raw or self.qcow2) and self.active and not pipeline.done():
            log.warning("chunk ending at %d acknowledged before its checkpoint (none after %.0f s)", end, limit)
        return False

    async def _wait(self, ready: Callable[[], bool], limit: float, pipeline: asyncio.Future[Any]) -> bool:
        """Wait until `ready()` (True), the pipeline ended, the checkpointer stopped or `limit` seconds."""
        try:
            async with asyncio.timeout(limit):
                while True:
                    if ready():
                        return True
                    if pipeline.done() or (self.began and not self.active):
                        return False
                    self._changed.clear()
                    waiter = asyncio.ensure_future(self._changed.wait())
                    try:
                        await asyncio.wait({waiter, pipeline}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
        except TimeoutError:
            return False

    def _wake(self) -> None:
        """Tell a waiting request (transfer thread); the loop is gone only when the server stopped."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._changed.set)

    def _covered(self, start: int, end: int) -> bool:
        if self.raw:
            return self.durable >= end
        if self.qcow2:
            return self.durable >= end or self.skipped >= end
        return self.durable >= start or self.seen >= end


@dataclass(frozen=True)
class Recovered:
    """What a new server found of an earlier server's upload: the decision, its sentence, and the
    compressed bytes kept past the record (`importer.uploadserver.wiretail`)."""

    decision: Decision
    message: str
    kept: Found | None = None

    @property
    def record(self) -> Checkpoint | None:
        return self.decision.record if self.decision.outcome is Outcome.RESUMED else None

    @property
    def offset(self) -> int:
        """Where the client continues: past the kept bytes, else at the record."""
        record = self.record
        if record is None:
            return 0
        return self.kept.end if self.kept is not None else record.wire_offset


def observe(store: RecordStore, partial_exists: bool, tail: WireTail | None = None) -> Recovered:
    """Read the record an earlier server left and decide (pure rules in `importer.resume`); for a
    compressed upload, look for the bytes kept past the record. A record at wire offset 0 (no restart
    point was reached: a single-block xz, a single-frame zstd) is continued too when bytes were kept
    from 0: the new pipeline starts from the image's first byte, fed from the tail."""
    unreadable = None
    try:
        record = store.load()
    except CheckpointCorrupt as e:
        record, unreadable = None, str(e)
    decision = decide(Observed(record, unreadable, partial_exists, "", "upload", True, hashstate.library_version()))
    kept = None
    if tail is not None and record is not None and record.compression is not None and record.not_resumable is None \
            and (decision.outcome is Outcome.RESUMED or record.wire_offset == 0):
        kept = tail.scan(record.wire_offset)
        if decision.outcome is not Outcome.RESUMED:
            if kept.end == 0:
                return Recovered(decision, describe_upload(decision), kept)
            decision = Decision(Outcome.RESUMED, record=record)
    return Recovered(decision, describe_upload(decision, kept), kept)


def describe_upload(decision: Decision, kept: Found | None = None) -> str:
    """The sentence for the log and the termination message (UploadResumed / UploadStartedOver)."""
    record = decision.record
    if decision.outcome is Outcome.RESUMED and record is not None:
        of = f" of {record.identity.size}" if record.identity.size is not None else ""
        done = (f"the disk's data already reached byte {record.target_offset}" if record.format == "qcow2" else
                f"{record.target_offset} bytes of the disk were already written")
        if kept is None or kept.end <= record.wire_offset:
            return f"Resumed the upload after an upload-server restart at byte {record.wire_offset}{of} ({done})"
        again = "from the image's start" if record.wire_offset == 0 else f"at byte {record.wire_offset}"
        return (f"Resumed the upload after an upload-server restart at byte {kept.end}{of} ({done}; the decoder "
                f"restarts {again}, fed the {kept.end - record.wire_offset} bytes kept beside the checkpoint)")
    if decision.outcome is Outcome.STARTED_OVER:
        return f"Started the upload over after an upload-server restart: {decision.reason}"
    return ""


def refuse_resume(record: Checkpoint, archive: bool, total: int | None) -> str | None:
    """Why a PUT at the recorded offset does not continue `record` (another upload), or None."""
    return record.identity.differs(upload_identity(archive, total))
