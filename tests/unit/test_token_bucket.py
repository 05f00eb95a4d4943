"""The Kubernetes transport's client-side rate limit: off by default, as controller-runtime's; a bucket when set."""

from __future__ import annotations

import asyncio

from cdi.kube.transport import DEFAULT_QPS, TokenBucket


class Time:
    """A monotonic clock that moves only when the bucket sleeps, by exactly what it asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_no_client_side_limit_by_default() -> None:
    bucket = TokenBucket(DEFAULT_QPS, 0)
    assert not bucket.limited
    async with asyncio.timeout(1):
        for _ in range(10_000):
            await bucket.take()


async def test_a_burst_goes_at_once_then_requests_are_spaced_at_the_rate() -> None:
    time = Time()
    bucket = TokenBucket(20.0, 30, clock=time, sleep=time.sleep)
    assert bucket.limited
    for _ in range(30):
        await bucket.take()
    assert time.waits == []  # the burst
    for _ in range(20):
        await bucket.take()
    assert len(time.waits) == 20 and all(abs(w - 0.05) < 1e-9 for w in time.waits)  # then 20 a second
    assert abs(time.now - 1.0) < 1e-9
    time.now += 10.0  # idle for long: the bucket refills, but never past the burst
    time.waits.clear()
    for _ in range(31):
        await bucket.take()
    assert len(time.waits) == 1
