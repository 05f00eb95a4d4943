"""Test helpers for asynchronous outcomes: wait until a condition holds, run a manager in the background.

Test code only: product code never polls for conditions like this.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from cdi.runtime.manager import Manager

Condition = Callable[[], bool | Awaitable[bool]]


async def until(condition: Condition, timeout: float = 3.0, what: str = "condition") -> None:
    """Return as soon as `condition()` is true; fail the test after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                outcome = condition()
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if outcome:
                    return
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout}s") from None


@asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Event]:
    """Run `manager` in the background until the block ends (or sets the yielded stop event)."""
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


@asynccontextmanager
async def loop_gaps(counting: Callable[[], bool] = lambda: True) -> AsyncIterator[list[float]]:
    """The gaps between the event loop's turns while the block runs (those while `counting()` is true):
    a task that never suspends shows as one long gap."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0)
            now = time.monotonic()
            if counting():
                gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        ticker.cancel()
