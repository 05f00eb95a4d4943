"""Lets the layer walk's worker thread run coroutines on the event loop, and stops it cleanly.

Why a worker thread: un-gzipping/un-zstding layers and parsing tar are synchronous, CPU-bound and
release the GIL in the decompressors, so they run beside the event loop that does the network I/O
(aiohttp objects stay on the loop; the thread only awaits them through `call`). Why `stop`: when the
consumer goes away (the pipeline failed, or asked for scratch space), every pending and later `call`
raises `Stopped` at once, so the thread unwinds instead of waiting on a queue nobody reads or a
socket nobody drains. Used by `importer.sources.registry.source` and the stores' layer openers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The stream's consumer is gone; the worker thread should unwind quietly."""


async def _run(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()  # the awaitable is created here, on the loop, not in the worker thread


class LoopCalls:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._stopped = False

    def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """From the worker thread: run `factory()` on the loop and wait for its result."""
        with self._lock:
            if self._stopped:
                raise Stopped
            future = asyncio.run_coroutine_threadsafe(_run(factory), self._loop)
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError as e:
            raise Stopped from e
        finally:
            with self._lock:
                self._pending.discard(future)

    def check(self) -> None:
        """From the worker thread, between purely local steps: unwind if stopped."""
        if self._stopped:
            raise Stopped

    def stop(self) -> None:
        """From the loop: make every pending and future call raise `Stopped`."""
        with self._lock:
            self._stopped = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()
