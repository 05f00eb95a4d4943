"""`FakeClock`: the runtime's `Clock` for tests, moving only when a test calls `advance`.

It also implements `cdi.runtime.queue.SteppedClock`: work queues built on it subscribe with
`on_advance`, so `advance` promotes every delayed key and backoff retry that fell due at once, with
no event-loop timers, and time-based tests run instantly and deterministically. Pass `clock.now` as
the `EmbeddedCluster`'s clock to keep the store's timestamps on the same fake time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Wall and monotonic time that move together, by `advance` only."""

    def __init__(self, start: datetime = START, monotonic: float = 1000.0) -> None:
        self._now = start
        self._monotonic = monotonic
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time forward and tell every subscriber (work queues fire their due timers)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
        for listener in list(self._listeners):
            listener()

    def on_advance(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    @property
    def listeners(self) -> int:
        """How many subscribers are attached (a stopped queue must have unsubscribed)."""
        return len(self._listeners)
