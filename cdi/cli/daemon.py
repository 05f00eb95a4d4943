"""What every long-running `cdi` command shares: log lines with time and source, and a stop on SIGINT or
SIGTERM. `cdi serve`, `cdi controller`, `cdi node` and `cdi apiserver` each hand `run_until_stopped` the
coroutine that serves until its `stop` event is set, and shut down gracefully from there."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def run_until_stopped(serve: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `serve(stop)` until it returns; SIGINT/SIGTERM set `stop`. The exit code is 0."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)
    return 0
