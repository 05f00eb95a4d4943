"""A second `cdi serve`-like process for the lock tests: `python -m tests.runtime.standby DB LOCK`.

It runs a `Manager` with the toy mirror controller on the shared SQLite file under the controller lock
and stops gracefully on SIGTERM. Logs go to stderr so the test can read who it is waiting for.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.runtime.manager import Manager
from tests.runtime.toys import add_mirror


async def serve(db_path: Path, lock_path: Path) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with EmbeddedCluster(db_path, poll_interval=0.02) as cluster:
        manager = Manager(cluster, lock_path=lock_path, lock_poll_interval=0.02)
        add_mirror(manager, cluster)
        await manager.run(stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    asyncio.run(serve(Path(sys.argv[1]), Path(sys.argv[2])))


if __name__ == "__main__":
    main()
