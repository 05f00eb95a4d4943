"""The cloner's transfer loop: begin (or rejoin) the clone, send every extent the server has not
acknowledged, prove it with the end-to-end digest, and resume after any failure from the server's
acknowledged offset, never from zero.

Each attempt starts with `begin`, which is idempotent: it joins the clone in progress and returns its
state (after the upload server restarted it starts a fresh one at offset 0). Extents are enumerated
from min(what the server acknowledged, what we already folded into our digest), so after a restart of
the cloner itself the extents before the acknowledged offset are read and hashed again but not sent.
Failures in a row are bounded (`max_failures`, with exponential backoff); any acknowledged progress
resets the count. A digest mismatch (the server forgot the clone) starts over once. While one extent
is on the wire the next is read and hashed on a worker thread, and the client keeps one more extent
queued behind the one the server is writing (`CloneClient.push`), so memory stays at three windows.
Used by `importer.cloner.main`.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from cdi.contracts import clone_protocol as cp
from importer.cloner.client import CloneClient, CloneRefused, Retry
from importer.cloner.extents import Extent, data_ranges, extents
from importer.errors import TransferInterrupted
from importer.progress import Progress

log = logging.getLogger("cloner")
Sleep = Callable[[float], Awaitable[None]]
MAX_FAILURES = 10
BACKOFF_CAP = 8.0


@dataclass(frozen=True)
class CloneReport:
    virtual_size: int
    data_bytes: int  # bytes the server acknowledged
    wire_bytes: int  # extent bytes sent, re-sends included
    attempts: int


class ProgressMap:
    """Progress as the share of the source's data ranges below a position, so holes count for nothing."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self._starts = [start for start, _ in ranges]
        self._ranges = ranges
        self._before: list[int] = []
        total = 0
        for start, end in ranges:
            self._before.append(total)
            total += end - start
        self.total = total

    def percent(self, position: int) -> float:
        if self.total == 0:
            return 100.0
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0:
            return 0.0
        start, end = self._ranges[index]
        done = self._before[index] + min(position, end) - start
        return done * 100.0 / self.total


async def _prefetched(source: Iterator[Extent]) -> AsyncIterator[Extent]:
    pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
    try:
        while (extent := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
            yield extent
    finally:
        if not pending.done():
            await asyncio.wait({pending})  # the reading thread must not outlive this pass


class Sender:
    def __init__(self, client: CloneClient, fd: int, size: int, mode: cp.VolumeMode, progress: Progress, *,
                 detect: bool = True, sleep: Sleep = asyncio.sleep, max_failures: int = MAX_FAILURES) -> None:
        self._client = client
        self._fd = fd
        self._begin = cp.Begin(size, mode)
        self._progress = progress
        self._detect = detect
        self._sleep = sleep
        self._max_failures = max_failures
        self._map = ProgressMap(list(data_ranges(fd, size, 0, seek=detect)))
        self._digest = cp.LayoutDigest(size)
        self._hashed_until = 0
        self._progressed = False  # an extent was acknowledged since the last failure

    async def run(self) -> CloneReport:
        failures, attempts, restarted = 0, 0, False
        while True:
            attempts += 1
            try:
                state = await self._client.begin(self._begin)
                state = await self._send_from(state)
                await self._client.finish(self._digest.hexdigest())
                self._progress.raise_to(100.0)
                return CloneReport(self._begin.virtual_size, state.received, self._client.sent, attempts)
            except Retry as e:
                failures = 1 if self._progressed else failures + 1
                self._progressed = False
                if failures > self._max_failures:
                    raise TransferInterrupted(f"clone interrupted: {failures} failures in a row, the last: {e}") from e
                delay = min(BACKOFF_CAP, 0.25 * 2 ** (failures - 1))
                log.warning("%s; resuming in %.2fs", e, delay)
                await self._sleep(delay)
            except CloneRefused as e:
                if e.reason != "CloneDigestMismatch" or restarted:
                    raise
                log.warning("%s", e.message)
                restarted = True
                self._digest, self._hashed_until = cp.LayoutDigest(self._begin.virtual_size), 0

    async def _send_from(self, state: cp.State) -> cp.State:
        acknowledged = state.next
        if acknowledged:
            log.info("resuming at offset %d (%d data bytes already acknowledged)", acknowledged, state.received)
        source = extents(self._fd, self._begin.virtual_size, min(self._hashed_until, acknowledged),
                         detect=self._detect)
        async for extent in _prefetched(source):
            if extent.offset >= self._hashed_until:
                self._digest.add(extent.offset, len(extent.data), extent.sha256)
                self._hashed_until = extent.end
            if extent.end > acknowledged:
                state = self._acknowledged(state, await self._client.push(extent.offset, extent.data))
            self._progress.raise_to(min(99.99, self._map.percent(extent.end)))
        return self._acknowledged(state, await self._client.drain())

    def _acknowledged(self, state: cp.State, answer: cp.State | None) -> cp.State:
        if answer is None:
            return state
        self._progressed = True
        return answer
