"""The work queue: de-duplication, one holder per key, delayed adds and backoff on a fake clock, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from cdi.runtime.queue import ExponentialBackoff, WorkQueue
from cdi.runtime.types import Key, SystemClock
from tests.runtime.clock import FakeClock
from tests.runtime.waiting import until

A, B, C = Key("default", "a"), Key("default", "b"), Key("", "c")


async def test_a_key_added_twice_is_handed_out_once(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    for key in (A, B, A, A, C, B):
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get(), await queue.get(), await queue.get()] == [A, B, C]
    assert len(queue) == 0


async def test_a_key_is_never_handed_out_while_a_worker_holds_it(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    queue.add(A)
    assert await queue.get() == A
    queue.add(A)  # changed while being processed
    queue.add(A)
    assert len(queue) == 0
    second_worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not second_worker.done()
    queue.done(A)
    assert await second_worker == A  # processed again afterwards, exactly once
    queue.done(A)
    assert len(queue) == 0 and queue.processing == frozenset()


async def test_a_key_not_added_during_processing_is_not_repeated(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    queue.add(A)
    assert await queue.get() == A
    queue.done(A)
    assert len(queue) == 0


async def test_many_workers_never_overlap_on_a_key_and_lose_no_change(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    keys = [Key("default", f"k{index}") for index in range(5)]
    holding: set[Key] = set()
    overlaps, versions_seen = 0, {key: 0 for key in keys}
    version = dict.fromkeys(keys, 0)

    async def worker() -> None:
        nonlocal overlaps
        while (key := await queue.get()) is not None:
            overlaps += key in holding
            holding.add(key)
            seen = version[key]
            await asyncio.sleep(0)
            versions_seen[key] = seen
            holding.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for round_ in range(1, 30):
        for key in keys:
            version[key] = round_
            queue.add(key)
        await asyncio.sleep(0)
    await until(lambda: not len(queue) and not queue.processing)
    queue.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == 0
    assert versions_seen == dict.fromkeys(keys, 29)  # the last change of every key was processed


async def test_add_after_waits_for_the_clock(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    getter = asyncio.create_task(queue.get())
    queue.add_after(A, 10)
    queue.add_after(B, 5)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not getter.done() and len(queue) == 0
    clock.advance(0.1)
    assert await getter == B
    clock.advance(4.9)
    assert len(queue) == 0
    clock.advance(0.1)
    assert await queue.get() == A


async def test_the_earliest_pending_deadline_wins_and_duplicates_collapse(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    queue.add_after(A, 30)
    queue.add_after(A, 10)
    queue.add_after(A, 20)
    assert queue.waiting == {A: clock.monotonic() + 10}
    clock.advance(10)
    assert len(queue) == 1
    clock.advance(30)
    assert len(queue) == 1  # the later entries were merged into the first


async def test_add_after_zero_is_an_immediate_add(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    queue.add_after(A, 0)
    assert await queue.get() == A


async def test_rate_limited_adds_back_off_exponentially_until_forgotten(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    delays = []
    for _ in range(6):
        queue.add_rate_limited(A)
        delays.append(round(queue.waiting[A] - clock.monotonic(), 6))
        clock.advance(queue.waiting[A] - clock.monotonic())
        assert await queue.get() == A
        queue.done(A)
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16]
    assert queue.num_requeues(A) == 6
    queue.forget(A)
    assert queue.num_requeues(A) == 0
    queue.add_rate_limited(A)
    assert queue.waiting[A] - clock.monotonic() == pytest.approx(0.005)


def test_backoff_is_capped_and_per_key() -> None:
    backoff = ExponentialBackoff(base=0.005, cap=300.0)
    delays = [backoff.when(A) for _ in range(200)]
    assert delays[16] == 300.0 and delays[-1] == 300.0
    assert max(delays) == 300.0
    assert backoff.when(B) == 0.005


async def test_shutdown_wakes_workers_ignores_adds_and_drains_in_flight_keys(clock: FakeClock) -> None:
    queue = WorkQueue(clock)
    queue.add(A)
    assert await queue.get() == A
    idle_worker = asyncio.create_task(queue.get())
    queue.add(B)
    queue.add_after(C, 5)
    await asyncio.sleep(0)
    assert await idle_worker == B
    queue.shutdown()
    assert await queue.get() is None  # no new keys are handed out
    queue.add(C)
    assert len(queue) == 0
    drained = asyncio.create_task(queue.drain())
    await asyncio.sleep(0)
    assert not drained.done()  # A and B are still being processed
    queue.done(A)
    queue.done(B)
    await asyncio.wait_for(drained, 1)
    assert clock.listeners == 0  # the stopped queue no longer follows the clock


async def test_delayed_adds_use_event_loop_timers_with_the_system_clock() -> None:
    queue = WorkQueue(SystemClock())
    queue.add_after(A, 0.02)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 2) == A
    queue.add_after(B, 60)
    queue.shutdown()  # cancels the pending timer: nothing is left scheduled on the loop
    assert await queue.get() is None
