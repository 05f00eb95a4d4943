"""The cloner's transfer loop: begin (or rejoin) the clone, send every extent the server has not
acknowledged, prove it with the end-to-end digest, and resume after any failure from the server's
acknowledged offset, never from zero.

Each attempt starts with `begin`, which is idempotent: it joins the clone in progress and returns its
state (after the upload server restarted it starts a fresh one at offset 0). Extents are enumerated
from min(what the server acknowledged, what we already folded into our digest), so after a restart of
the cloner itself the extents before the acknowledged offset are read and hashed again but not sent.
Failures in a row are bounded (`max_failures`, with exponential backoff); any acknowledged progress
resets the count. A digest mismatch (the server forgot the clone) starts over once.

The begin request offers the digest algorithms this build knows (`cp.DIGESTS`, BLAKE3 first); the
server's answer names the one it chose (an earlier build names none: sha256).

An attempt's extents are sent by one worker thread, without a hop through the event loop per extent:
each window is mapped (or, where it cannot be, read) one ahead on a reader thread (`extents.Windows`),
and each extent is hashed piece by piece as it is written to the TLS socket (`CloneClient.send_extent`),
while the client keeps one more extent queued behind the one the server is writing. Memory: two
windows, whatever the clone's size.
Used by `importer.cloner.main`.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cdi.contracts import clone_protocol as cp
from importer.cloner.client import CloneClient, CloneRefused, Retry
from importer.cloner.extents import Windows, data_ranges
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
    """Progress as the share of the source's data ranges below a position, so holes count for nothing;
    `done` is the bytes of those ranges below it (what the metrics page serves as bytes done, of `total`)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self._starts = [start for start, _ in ranges]
        self._ranges = ranges
        self._before: list[int] = []
        total = 0
        for start, end in ranges:
            self._before.append(total)
            total += end - start
        self.total = total

    def done(self, position: int) -> int:
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0:
            return 0
        start, end = self._ranges[index]
        return self._before[index] + min(position, end) - start

    def percent(self, position: int) -> float:
        return 100.0 if self.total == 0 else self.done(position) * 100.0 / self.total


class Sender:
    def __init__(self, client: CloneClient, fd: int, size: int, mode: cp.VolumeMode, progress: Progress, *,
                 detect: bool = True, sleep: Sleep = asyncio.sleep, max_failures: int = MAX_FAILURES) -> None:
        self._client = client
        self._fd = fd
        self._begin = cp.Begin(size, mode, offers=cp.DIGESTS)
        self._progress = progress
        self._detect = detect
        self._sleep = sleep
        self._max_failures = max_failures
        self._map = ProgressMap(list(data_ranges(fd, size, 0, seek=detect)))
        progress.count(0, self._map.total)
        self._windows = Windows(fd, size, detect=detect)
        self._digest = cp.LayoutDigest(size)
        self._hashed_until = 0
        self._announced = ""  # the digest algorithm last logged
        self._stop = threading.Event()  # set when `run` is cancelled: the worker thread stops between extents
        self._progressed = False  # an extent was acknowledged since the last failure

    async def run(self) -> CloneReport:
        failures, attempts, restarted = 0, 0, False
        while True:
            attempts += 1
            try:
                state = self._negotiated(await self._client.begin(self._begin))
                state = await self._send_from(state)
                await self._client.finish(self._digest.hexdigest())
                self._progress.count(self._map.total, self._map.total)
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
                self._digest, self._hashed_until = cp.LayoutDigest(self._begin.virtual_size, self._digest.algorithm), 0

    def _negotiated(self, state: cp.State) -> cp.State:
        """Hash with the algorithm the server chose (sha256 when it is of an earlier build and names
        none); a change of algorithm between attempts (a server of another build took over) starts our
        digest over: the acknowledged extents are read and hashed again, not sent."""
        if state.digest not in self._begin.acceptable:
            raise CloneRefused(f"the upload server chose digest {state.digest!r}, which was not offered",
                               "CloneDigestUnsupported")
        if state.digest != self._digest.algorithm:
            self._digest, self._hashed_until = cp.LayoutDigest(self._begin.virtual_size, state.digest), 0
        if state.digest != self._announced:
            log.info("end-to-end digest: %s", state.digest)
            self._announced = state.digest
        return state

    async def _send_from(self, state: cp.State) -> cp.State:
        work = asyncio.ensure_future(asyncio.to_thread(self._send_blocking, state))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self._stop.set()
            await asyncio.wait({work})  # the thread must not outlive the attempt (it uses the client)
            raise

    def _send_blocking(self, state: cp.State) -> cp.State:
        acknowledged = state.next
        if acknowledged:
            log.info("resuming at offset %d (%d data bytes already acknowledged)", acknowledged, state.received)
        for offset, data in self._windows.spans(min(self._hashed_until, acknowledged)):
            if self._stop.is_set():
                raise Retry("the clone was cancelled")
            end = offset + len(data)
            if end > acknowledged:
                data_digest, answer = self._client.send_extent(offset, data, self._digest.algorithm)
                state = self._acknowledged(state, answer)
            else:  # acknowledged before this process started: only folded into our digest
                hasher = cp.data_hash(self._digest.algorithm)
                hasher.update(data)
                data_digest = hasher.digest()
            if offset >= self._hashed_until:
                self._digest.add(offset, len(data), data_digest)
                self._hashed_until = end
            self._progress.count(self._map.done(end), self._map.total)
            self._progress.raise_to(min(99.99, self._map.percent(end)))
        return self._acknowledged(state, self._client.drain_blocking())

    def _acknowledged(self, state: cp.State, answer: cp.State | None) -> cp.State:
        if answer is None:
            return state
        self._progressed = True
        return answer
