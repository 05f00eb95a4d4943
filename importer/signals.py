"""SIGTERM (and SIGINT) for the data plane's entrypoints.

As a container's PID 1 (a kubelet runs the image without an init process), a process gets only the
signals it handles: with no handler, SIGTERM is ignored and the pod sits out its whole grace period
until SIGKILL. `run_main` runs an entrypoint's main coroutine with handlers for both: the first one
cancels the coroutine, so its `finally` blocks run (progress written, metrics server stopped, nothing
more acknowledged or written after the last checkpoint) and the process exits with 128 + the signal
(143 for SIGTERM), as a container runtime reports a process a signal ended. Called by the `main` of
`cdi-importer`, `cdi-uploadserver` and `cdi-cloner`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
HANDLED = (signal.SIGTERM, signal.SIGINT)


def run_main(main: Coroutine[Any, Any, int]) -> int:
    """`asyncio.run(main)`, ending early with 128 + n when signal n (SIGTERM, SIGINT) arrives."""
    return asyncio.run(_guarded(main))


async def _guarded(main: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received:
            log.info("%s received: stopping", signal.Signals(signum).name)
            received.append(signum)
            task.cancel()

    for signum in HANDLED:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await main
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0]
    finally:
        for signum in HANDLED:
            loop.remove_signal_handler(signum)
