"""Keeps the file copy of the upload token key ring in step with its Secret, inside `cdi serve`.

The embedded store answers an UploadTokenRequest synchronously from a file (`cdi.embedded.uploadtokens`),
while the ring itself is a Secret in the store that `ensure_key_ring` creates on first use and the
rotation controller (`cdi.controllers.upload.rotator`) rotates. `TokenKeyFile.start` creates or loads the
ring and writes the file before `cdi serve` runs its controllers, then refreshes it every
`Schedule.refresh` seconds (`CDI_CREDENTIAL_REFRESH_INTERVAL`, default 60). A new key is published to the
proxy `Schedule.propagation` seconds before it becomes the ring's current key, so by the time this file
signs with it the proxy trusts it; the key it replaces verifies for a token lifetime after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from cdi.cluster.protocol import Cluster
from cdi.controllers.upload.credentials import ensure_key_ring
from cdi.controllers.upload.rotation import Schedule
from cdi.embedded.uploadtokens import KeyRingFile
from cdi.runtime.types import Clock

log = logging.getLogger(__name__)


class TokenKeyFile:
    def __init__(self, cluster: Cluster, file: KeyRingFile, clock: Clock,
                 interval: float | None = None) -> None:
        self._cluster, self._file, self._clock = cluster, file, clock
        self._interval = interval if interval is not None else Schedule.from_environ(os.environ).refresh
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
