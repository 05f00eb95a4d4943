"""The work queue between informers and reconcile workers, with client-go's workqueue semantics.

Informer handlers (`cdi.runtime.controller`) `add` keys; workers `get` a key, reconcile it and mark
it `done`. A key is held at most once: adding a key that is already waiting does nothing, and a key
added while a worker holds it is handed out again only after that worker calls `done`, so no key is
ever reconciled concurrently with itself and no change is lost. `add_after` parks a key on a timer
heap ordered by the injected clock's monotonic time; `add_rate_limited` parks it for a per-key
exponential backoff (`ExponentialBackoff`: 5 ms doubling to 5 min, as controller-runtime) until
`forget` resets it.

Timers: with a clock that tells the queue when it moves (`SteppedClock`, the tests' fake clock) the
queue arms no event-loop timers and promotes due keys whenever the clock advances, so tests are
instant and deterministic; with any other clock it arms one `loop.call_later` for the earliest
deadline. Either way `get` and `poll` re-check the heap against the clock.

`instrument` hands the queue a `WorkQueueMetrics` (`cdi.runtime.instrumentation`): effective adds, waits
between add and hand-out, work durations, retries and the queue's depth, as client-go's work queue reports
them; without one it reports nothing and behaves the same.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from cdi.runtime.instrumentation import WorkQueueMetrics
from cdi.runtime.types import Clock, Key

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 300.0


@runtime_checkable
class SteppedClock(Protocol):
    """A clock that only moves when told, and calls back when it does (a test's fake clock)."""

    def monotonic(self) -> float: ...

    def on_advance(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every advance; returns a function that unsubscribes it."""
        ...


class ExponentialBackoff:
    """Per-key failure delays: `base * 2**failures`, capped at `cap`, until `forget(key)`."""

    def __init__(self, base: float = DEFAULT_BASE_DELAY, cap: float = DEFAULT_MAX_DELAY) -> None:
        self._base, self._cap = base, cap
        self._failures: dict[Key, int] = {}

    def when(self, key: Key) -> float:
        """The delay before retrying `key`, counting one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 * base is past any sensible cap; avoid float overflow
            return self._cap
        return float(min(self._base * 2**failures, self._cap))

    def failures(self, key: Key) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """A de-duplicating, delaying, rate-limited queue of keys for one controller's workers."""

    def __init__(self, clock: Clock, *, backoff: ExponentialBackoff | None = None) -> None:
        self._clock = clock
        self._backoff = backoff or ExponentialBackoff()
        self._ready: deque[Key] = deque()
        self._dirty: set[Key] = set()  # waiting to be handed out (in _ready, or re-added while processing)
        self._processing: set[Key] = set()
        self._deadlines: dict[Key, float] = {}  # each parked key's earliest deadline
        self._heap: list[tuple[float, int, Key]] = []  # may hold stale entries; _deadlines decides
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutting_down = False
        self._unsubscribe = clock.on_advance(self.poll) if isinstance(clock, SteppedClock) else None
        self._metrics: WorkQueueMetrics | None = None
        self._added_at: dict[Key, float] = {}  # when each waiting key was added (for its wait)
        self._started: dict[Key, float] = {}  # when each key being processed was handed out

    def instrument(self, metrics: WorkQueueMetrics) -> None:
        """Report to `metrics` from now on."""
        self._metrics = metrics

    def in_flight(self) -> Sequence[float]:
        """How long each key being processed has been held, in seconds."""
        now = self._clock.monotonic()
        return [now - started for started in self._started.values()]

    def __len__(self) -> int:
        """How many keys are ready to be handed out."""
        return len(self._ready)

    @property
    def processing(self) -> frozenset[Key]:
        return frozenset(self._processing)

    @property
    def waiting(self) -> dict[Key, float]:
        """Parked keys and the monotonic time at which each becomes ready."""
        return dict(self._deadlines)

    def is_shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: Key) -> None:
        """Queue `key` unless it is already waiting; after shutdown this does nothing."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._added_at.setdefault(key, self._clock.monotonic())
        if self._metrics is not None:
            self._metrics.added(len(self._dirty))
        if key not in self._processing:
            self._ready.append(key)
            self._notify()

    def add_after(self, key: Key, seconds: float) -> None:
        """Queue `key` once `seconds` have passed on the clock; an earlier pending deadline wins."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retried()  # as client-go's AddAfter counts every delayed add
        if seconds <= 0:
            self.add(key)
            return
        deadline = self._clock.monotonic() + seconds
        if key in self._deadlines and self._deadlines[key] <= deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._sequence), key))
        self._arm()

    def add_rate_limited(self, key: Key) -> None:
        """Queue `key` after its next backoff delay (a failed reconcile)."""
        self.add_after(key, self._backoff.when(key))

    def forget(self, key: Key) -> None:
        """Reset `key`'s backoff (a successful reconcile)."""
        self._backoff.forget(key)

    def num_requeues(self, key: Key) -> int:
        return self._backoff.failures(key)

    async def get(self) -> Key | None:
        """The next key to reconcile, waiting for one; None once the queue is shut down."""
        while True:
            self.poll()
            if self._shutting_down:
                return None
            if self._ready:
                key = self._ready.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                self._idle.clear()
                now = self._clock.monotonic()
                self._started[key] = now
                waited = now - self._added_at.pop(key, now)
                if self._metrics is not None:
                    self._metrics.handed_out(len(self._dirty), waited)
                return key
            self._arm()
            await self._wake.wait()

    def done(self, key: Key) -> None:
        """A worker finished `key`; hand it out again if it was added meanwhile."""
        self._processing.discard(key)
        started = self._started.pop(key, None)
        if self._metrics is not None and started is not None:
            self._metrics.finished(self._clock.monotonic() - started)
        if key in self._dirty and not self._shutting_down:
            self._ready.append(key)
            self._notify()
        if not self._processing:
            self._idle.set()

    def poll(self) -> None:
        """Move every parked key whose deadline has passed into the queue."""
        now = self._clock.monotonic()
        while self._heap and self._heap[0][0] <= now:
            deadline, _, key = heapq.heappop(self._heap)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                self.add(key)

    def shutdown(self) -> None:
        """Stop handing out keys: waiting and later `get`s return None, adds are ignored, timers end."""
        self._shutting_down = True
        self._ready.clear()
        self._dirty.clear()
        self._added_at.clear()
        self._heap.clear()
        self._deadlines.clear()
        self._disarm()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._metrics is not None:
            self._metrics.emptied()
        self._notify()

    async def drain(self) -> None:
        """Wait until every key handed out has been marked `done`."""
        await self._idle.wait()

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def _arm(self) -> None:
        """Set one event-loop timer for the earliest deadline (not needed with a stepped clock)."""
        self._disarm()
        if not self._heap or self._unsubscribe is not None or self._shutting_down:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next `get` arms it
        delay = max(0.0, self._heap[0][0] - self._clock.monotonic())
        self._timer = loop.call_later(delay, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.poll()
        self._arm()
