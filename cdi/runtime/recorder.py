"""`QueuedEvents`: the manager's Event recorder, which writes Events from a task of its own.

client-go's recorder hands an Event to a broadcaster and returns; a goroutine writes it to the API server,
retrying. We do the same, so that a reconcile does not wait for its Events: they are a third of a
DataVolume's writes, and a reconcile that waits for them holds its key and a worker for that long.

- `record` checks the Event at once (a type other than Normal/Warning, or an object without kind and
  name, raises `Invalid` as the API server would refuse it), takes the time and the object's reference
  as they are now, and queues it. When `MAX_QUEUED` Events already wait, the new one is dropped with a
  warning, as client-go drops Events past its queue of 1,000.
- `WRITERS` tasks write them through `record_event` (create, or count one more of the same Event),
  several at once so that the Events keep up with a store or API server that answers each write in
  tens of milliseconds at load (with one writer, 1,000 DataVolumes created at once overflowed the
  queue: a third of their Events were lost); two writers of the same Event count both, as concurrent
  recorders do (`record_event`). An error the server calls retryable (429, 5xx, an unavailable
  store, a Conflict that kept coming) is retried after `RETRY_DELAY`, doubling, up to `ATTEMPTS`
  writes in all; any other error (the namespace is gone, Forbidden) is logged and the Event dropped,
  as a reconcile never fails for an Event.
- `flush()` returns once every Event queued before it is written or dropped; `stop(timeout)` flushes
  for at most `timeout` seconds and then drops the rest with a warning that says how many. The first
  `record` starts the writers; whoever made the recorder stops them (the manager, when it shuts down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cdi.cluster.errors import ApiError
from cdi.cluster.events import check_event, record_event
from cdi.cluster.protocol import Cluster, Object

logger = logging.getLogger(__name__)

MAX_QUEUED = 1000
WRITERS = 8
ATTEMPTS = 6
RETRY_DELAY = 0.5  # seconds before the second attempt; doubles with each further one


@dataclass(frozen=True)
class _Pending:
    involved: Object  # apiVersion, kind and the metadata an Event's reference carries, as at `record`
    type: str
    reason: str
    message: str
    component: str
    at: datetime


class QueuedEvents:
    """An `EventSink` (`cdi.cluster.events`) whose `record` queues; the first `record` starts the writer."""

    def __init__(self, cluster: Cluster, clock: Callable[[], datetime], *, host: str = "",
                 max_queued: int = MAX_QUEUED, retry_delay: float = RETRY_DELAY, writers: int = WRITERS) -> None:
        self._cluster, self._clock, self._host = cluster, clock, host
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(max_queued)
        self._retry_delay = retry_delay
        self._writer_count = max(1, writers)
        self._writers: list[asyncio.Task[None]] = []
        self._writing = 0  # Events the writers hold now
        self.dropped = 0  # Events given up on: queue full, refused, retries spent, or left at `stop`

    async def record(self, involved: Object, type_: str, reason: str, message: str, *, component: str) -> None:
        reference = check_event(involved, type_)
        if not self._writers:
            self._writers = [asyncio.create_task(self._write_all(), name="event-recorder")
                             for _ in range(self._writer_count)]
        meta = {field: reference[field] for field in ("name", "namespace", "uid", "resourceVersion")
                if field in reference}
        pending = _Pending({"apiVersion": reference["apiVersion"], "kind": reference["kind"], "metadata": meta},
                           type_, reason, message, component, self._clock())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("event queue full (%d waiting): dropped %s event %s on %s %s/%s", self._queue.maxsize,
                           type_, reason, reference["kind"], reference.get("namespace", ""), reference["name"])

    async def flush(self) -> None:
        """Wait until everything recorded so far is written or dropped."""
        await self._queue.join()

    async def stop(self, timeout: float) -> None:
        """Write what is queued for at most `timeout` seconds, then stop the writer."""
        if not self._writers:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            left = self._queue.qsize() + self._writing
            self.dropped += left
            logger.warning("stopping with %d event(s) not written after %.1fs; dropped", left, timeout)
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)

    async def _write_all(self) -> None:
        while True:
            pending = await self._queue.get()
            self._writing += 1
            try:
                await self._write(pending)
            except Exception:  # a bug, not the server: the writer must outlive it
                self.dropped += 1
                logger.exception("recording %s event %s failed", pending.type, pending.reason)
            finally:
                self._writing -= 1
                self._queue.task_done()

    async def _write(self, pending: _Pending) -> None:
        delay = self._retry_delay
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await record_event(self._cluster, pending.involved, pending.type, pending.reason, pending.message,
                                   component=pending.component, clock=lambda: pending.at, host=self._host)
                return
            except ApiError as e:
                if not e.retryable or attempt == ATTEMPTS:
                    self.dropped += 1
                    logger.warning("could not record %s event %s on %s %s/%s (attempt %d): %s", pending.type,
                                   pending.reason, pending.involved["kind"],
                                   pending.involved["metadata"].get("namespace", ""),
                                   pending.involved["metadata"]["name"], attempt, e)
                    return
            await asyncio.sleep(delay)
            delay *= 2
