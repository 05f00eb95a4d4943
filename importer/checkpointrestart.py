"""Turning a qcow2 checkpoint record back into a running converter: the one rebuild both restarts share.

A qcow2 record (`importer.checkpoint.Checkpoint` with `format == "qcow2"`) names byte ranges of the
image (`importer.qcow2stream.restart.RestartRecord`: header and L1 table, the L2 and refcount table
clusters passed, the first part of a compressed cluster cut by the checkpoint, spooled clusters).
`rebuild` asks a `RangeFetcher` for exactly those ranges and hands them to the pure
`importer.qcow2stream.restart.plan_restart`; whatever goes wrong becomes the sentence the user sees
when the attempt starts over. Two fetchers:

- `SourceRanges` (here): ranged requests to the import's source, pinned to the recorded version
  (ETag/If-Range, S3 IfMatch, GCS generation), a few at a time; called by `importer.main`.
- `importer.checkpointranges.LocalRanges`: the bytes the upload server kept on the volume beside its
  record (an upload's source is the client, which cannot be asked for ranges); called by
  `importer.uploadserver.resumable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from importer.checkpoint import Checkpoint
from importer.checkpointranges import RangesUnavailable
from importer.compressedqcow2 import converter_view
from importer.qcow2stream.restart import Restart, RestartMismatch, RestartRecord, plan_restart
from importer.resume import confirm
from importer.sources.base import ResumableSource

log = logging.getLogger(__name__)
RANGES_AT_ONCE = 4  # ranged requests a qcow2 restart keeps open at once


class RangeFetcher(Protocol):
    """Where a restart reads the image's ranges again."""

    @property
    def where(self) -> str:
        """For the log: "the source", "the upload's kept ranges"."""
        ...

    async def fetch(self, ranges: Sequence[tuple[int, int]]) -> Mapping[int, bytes]:
        """Bytes [start, end) of each range, keyed by start; raises `RangesUnavailable`."""
        ...


async def rebuild(record: Checkpoint, fetcher: RangeFetcher) -> tuple[Restart | None, str | None]:
    """The converter's state at `record`'s checkpoint, rebuilt from the ranges it names; or why the
    attempt cannot continue there."""
    try:
        record = converter_view(record)  # a compressed qcow2's: the decoded image's position and ranges
        kept = RestartRecord.decode(record.decoder_state)
        fetched = await fetcher.fetch(kept.ranges)
    except RestartMismatch as e:
        return None, e.reason
    except RangesUnavailable as e:
        return None, e.reason
    log.info("read the image's tables again from %s: %d bytes in %d ranges", fetcher.where,
             sum(map(len, fetched.values())), len(fetched))
    try:
        return plan_restart(record.wire_offset - len(record.carry), fetched, kept.spooled), None
    except RestartMismatch as e:
        return None, e.reason


class SourceRanges:
    """Ranged requests to the recorded version of an import's source."""

    where = "the source"

    def __init__(self, source: ResumableSource, record: Checkpoint) -> None:
        self._source = source
        self._record = record

    async def fetch(self, ranges: Sequence[tuple[int, int]]) -> Mapping[int, bytes]:
        gate = asyncio.Semaphore(RANGES_AT_ONCE)
        answers = await asyncio.gather(*(self._read(start, end, gate) for start, end in ranges))
        if why := next((answer for answer in answers if isinstance(answer, str)), None):
            raise RangesUnavailable(why)
        return {start: data for (start, _), data in zip(ranges, answers, strict=True) if isinstance(data, bytes)}

    async def _read(self, start: int, end: int, gate: asyncio.Semaphore) -> bytes | str:
        """Bytes [start, end) of the recorded version of the source, or why they cannot be had."""
        record = self._record
        async with gate, self._source.open_at(start, record.identity, end) as stream:
            if why := confirm(record, stream.identity, stream.start, start):
                return why
            data = await _gather(stream.chunks, end - start)
        if len(data) < end - start:
            return f"the source ended at byte {start + len(data)}, inside the image's tables at {start}-{end - 1}"
        return data


async def _gather(chunks: AsyncIterator[bytes], length: int) -> bytes:
    """The first `length` bytes of a stream (a server that ignores the range's end sends more)."""
    parts, got = [], 0
    async for chunk in chunks:
        parts.append(chunk[:length - got])
        got += len(parts[-1])
        if got >= length:
            break
    return b"".join(parts)
