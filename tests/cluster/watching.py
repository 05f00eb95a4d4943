"""Helpers for reading a bounded number of events from a watch stream in tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cdi.cluster.protocol import WatchEvent


async def take(stream: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0) -> list[tuple[str, str]]:
    """The next `count` events as (type, name)."""
    return [(event.type, event.object["metadata"]["name"]) for event in await take_events(stream, count, timeout)]


async def take_events(stream: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            events.append(await anext(stream))
    return events


async def assert_quiet(stream: AsyncIterator[WatchEvent]) -> None:
    with pytest.raises(TimeoutError):
        await take(stream, 1, timeout=0.15)
