"""The upload server as an object graph (`UploadServer`), startable in-process (tests, `cdi serve`) or by
`cdi-uploadserver` (`importer.uploadserver.main`), which hands it a socket it bound before importing this
module (the HTTP stack and the data path: most of the program's start-up). `serve` runs one until its
gate settles. The request handlers are `importer.uploadserver.handlers`; what to do with the bytes,
`importer.uploadserver.processing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import socket
from collections.abc import Callable

from aiohttp import web

from cdi.contracts.metrics import METRICS_PATH
from cdi.contracts.termination import DEADLINE_PASSED, TerminationMessage
from importer.metrics import progress_page
from importer.progress import Progress
from importer.qemu import QemuImg
from importer.uploadserver.config import UploadServerConfig
from importer.uploadserver.gate import ServerResult, UploadGate
from importer.uploadserver.handlers import UploadHandlers
from importer.uploadserver.processing import Processor
from importer.uploadserver.security import server_context

log = logging.getLogger("uploadserver")
Clock = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class UploadServer:
    def __init__(self, config: UploadServerConfig, *, qemu: QemuImg | None = None, clock: Clock = _utcnow,
                 owner_uid: str = "", listening: socket.socket | None = None) -> None:
        self.config = config
        self._listening = listening  # bound to the config's address already (`main.listen_early`)
        self._qemu = qemu or QemuImg()
        self._clock = clock
        self._owner_uid = owner_uid
        self.progress = Progress()
        self._runner: web.AppRunner | None = None
        self._handlers: UploadHandlers | None = None
        self._gate: UploadGate | None = None
        self._deadline: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen (port 0 picks a free one), or serve on the socket given, and return the port."""
        context = server_context(self.config.tls) if self.config.tls is not None else None
        self._gate = UploadGate()
        self._handlers = UploadHandlers(self.config, Processor(self.config, self._qemu, self.progress), self._gate)
        app = self._handlers.app()
        app.router.add_get(METRICS_PATH, self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site: web.BaseSite
        if self._listening is not None:
            site = web.SockSite(self._runner, self._listening, ssl_context=context)
        else:
            site = web.TCPSite(self._runner, self.config.listen_address, self.config.listen_port,
                               ssl_context=context)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.listen_port
        if self.config.deadline is not None:
            self._deadline = asyncio.create_task(self._watch_deadline(self.config.deadline))
        log.info("listening on %s:%d (%s)", self.config.listen_address, self.port,
                 "TLS" if context else "plain HTTP, insecure test mode")
        return self.port

    async def _metrics(self, _request: web.Request) -> web.Response:
        """The importer's progress page (ours for uploads: upstream's upload server serves none), open to
        any client as the importer's is: it tells only how far the upload got."""
        return web.Response(body=progress_page(self.progress, self._owner_uid),
                            content_type="text/plain", charset="utf-8")

    async def wait(self) -> ServerResult:
        assert self._gate is not None, "start() first"
        return await self._gate.result()

    async def stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadline
        if self._handlers is not None:
            await self._handlers.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _watch_deadline(self, deadline: datetime.datetime) -> None:
        """Upstream: past the deadline, wait for any upload in flight (upstream polls every 2 s; we wait
        on the gate); if none succeeded, give up."""
        assert self._gate is not None
        await asyncio.sleep(max(0.0, (deadline - self._clock()).total_seconds()))
        await self._gate.settled()
        if not self._gate.finished:
            log.info("deadline %s passed", deadline.isoformat())
            self._gate.finish(ServerResult(0, TerminationMessage(message=DEADLINE_PASSED, deadline_passed=True)))


async def serve(config: UploadServerConfig, owner_uid: str = "",
                listening: socket.socket | None = None) -> ServerResult:
    server = UploadServer(config, owner_uid=owner_uid, listening=listening)
    await server.start()
    try:
        return await server.wait()
    finally:
        await server.stop()


