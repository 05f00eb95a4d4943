"""`cdi-uploadserver`: serve until one upload has succeeded (or a background failure, or the deadline),
then write the termination message and exit, as upstream's `cmd/cdi-uploadserver`:

    success                      exit 0, {"preallocationApplied":<b>,"message":"Upload Complete"}
    DEADLINE passed, nothing     exit 0, {"deadlinePassed":true,"message":"Deadline Passed"} (the controller
    in flight                    replaces the pod, with fresh certificates)
    async processing failed      exit 1, "Unable to process data: ..." with its reason (the pod restarts
    after its 200                and the same upload can be tried again)
    bad configuration            exit 1

Failures answered to a client (sync uploads, and async ones before their 200) leave the server
running for a retry. Ours: `GET /metrics` on the same port serves the importer's progress page (bytes
received so far, and the size when the client declared it), labelled with OWNER_UID, which the
DataVolume controller scrapes for bytes, rate, ETA and stalls. `UploadServer` is the object graph,
startable in-process (tests, `cdi serve`); `run` is what the console script calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from cdi.contracts import importer_env
from cdi.contracts.metrics import METRICS_PATH
from cdi.contracts.termination import DEADLINE_PASSED, TerminationMessage
from importer.errors import ConfigurationError
from importer.main import write_termination
from importer.metrics import progress_page
from importer.progress import Progress
from importer.qemu import QemuImg
from importer.signals import run_main
from importer.uploadserver.config import UploadServerConfig, load_config
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
                 owner_uid: str = "") -> None:
        self.config = config
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
        """Listen (port 0 picks a free one) and return the port."""
        context = server_context(self.config.tls) if self.config.tls is not None else None
        self._gate = UploadGate()
        self._handlers = UploadHandlers(self.config, Processor(self.config, self._qemu, self.progress), self._gate)
        app = self._handlers.app()
        app.router.add_get(METRICS_PATH, self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen_address, self.config.listen_port, ssl_context=context)
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


async def serve(config: UploadServerConfig, owner_uid: str = "") -> ServerResult:
    server = UploadServer(config, owner_uid=owner_uid)
    await server.start()
    try:
        return await server.wait()
    finally:
        await server.stop()


async def run(environ: Mapping[str, str]) -> int:
    termination_log = Path(environ.get(importer_env.TERMINATION_LOG, importer_env.DEFAULT_TERMINATION_LOG))
    try:
        config = load_config(environ)
        result = await serve(config, environ.get(importer_env.OWNER_UID, ""))
    except ConfigurationError as e:
        log.error("%s", e.message)
        write_termination(termination_log, TerminationMessage(message=e.message, reason=e.reason, retryable=False))
        return 1
    except OSError as e:
        log.error("upload server failed: %s", e)
        return 1
    if result.message is not None:
        write_termination(config.termination_log, result.message)
    log.info("exiting %d: %s", result.exit_code, result.message.message if result.message else "")
    return result.exit_code


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_main(run(os.environ)))


if __name__ == "__main__":
    main()
