"""Keeps the file copy of the upload token key ring in step with its Secret, inside `cdi serve`.

The embedded store answers an UploadTokenRequest synchronously from a file (`cdi.embedded.uploadtokens`),
while the ring itself is a Secret in the store that `ensure_key_ring` creates on first use and rotates
when due (the upload proxy host calls it too, for the public keys it trusts). `TokenKeyFile.start`
creates or loads the ring and writes the file before `cdi serve` runs its controllers, then refreshes it
every `REFRESH_INTERVAL` seconds, so a rotation reaches the signer within a minute — well inside the
time the previous key stays trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cdi.cluster.protocol import Cluster
from cdi.controllers.upload.credentials import ensure_key_ring
from cdi.embedded.uploadtokens import KeyRingFile
from cdi.runtime.types import Clock

log = logging.getLogger(__name__)
REFRESH_INTERVAL = 60.0


class TokenKeyFile:
    def __init__(self, cluster: Cluster, file: KeyRingFile, clock: Clock,
                 interval: float = REFRESH_INTERVAL) -> None:
        self._cluster, self._file, self._clock, self._interval = cluster, file, clock, interval
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        ring = await ensure_key_ring(self._cluster, self._clock.now())
        await asyncio.to_thread(self._file.write, ring)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception as e:  # keep signing with the current copy; the previous key stays trusted a while
                log.warning("could not refresh the upload token signing key file: %s", e)
