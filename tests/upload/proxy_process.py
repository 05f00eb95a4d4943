"""Runs the upload proxy in a process of its own, configured by the standard environment, with upload
targets from a JSON table in TEST_UPLOAD_TARGETS ({"<namespace>/<pvc>": "https://host:port"}) instead
of Service DNS names. Prints the port it listens on, then serves until SIGTERM. Used by the memory test,
which needs the proxy's own peak RSS."""

from __future__ import annotations

import asyncio
import json
import os
import signal

from uploadproxy.main import ProxyServer, load_config
from uploadproxy.resolver import UploadTarget, pvc_missing


class JsonTableResolver:
    def __init__(self, table: dict[str, str]) -> None:
        self._table = table

    async def resolve(self, namespace: str, pvc: str) -> UploadTarget:
        url = self._table.get(f"{namespace}/{pvc}")
        if url is None:
            raise pvc_missing(pvc)
        return UploadTarget(url)


async def serve() -> None:
    server = ProxyServer(load_config(os.environ), JsonTableResolver(json.loads(os.environ["TEST_UPLOAD_TARGETS"])))
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print(await server.start(), flush=True)
    try:
        await stopping.wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(serve())
