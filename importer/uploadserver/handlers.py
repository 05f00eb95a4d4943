"""The upload server's HTTP endpoints (paths in `cdi.contracts.upload_protocol`), with upstream's gate
in upstream's order: a non-POST is 404 (async endpoints answer HEAD with 200 first, so clients can
probe for async support); without a verified client certificate named CLIENT_NAME, 401; while
another upload runs, 503; after one succeeded, 409. /healthz answers any method with "OK".

Sync endpoints run the whole pipeline inside the request and answer with its result; async endpoints
answer once the image passed validation and leave conversion to the background. Form endpoints take
the multipart part named `file` (none: 400, and nothing else happens). The resumable endpoints are
delegated to `resumable`, the host-assisted clone endpoints to `clonetarget` (same client check).
Built by `importer.uploadserver.main`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from aiohttp import web

from cdi.contracts import upload_protocol as up
from importer.errors import ConfigurationError, TransferInterrupted
from importer.uploadserver.bodies import CountedBody, FormError, form_file, raw_body
from importer.uploadserver.clonetarget import CloneTarget, Handler
from importer.uploadserver.config import UploadServerConfig
from importer.uploadserver.gate import GateClosed, UploadGate
from importer.uploadserver.processing import Processing, Processor, http_failure, settle
from importer.uploadserver.resumable import ResumableUploads
from importer.uploadserver.security import client_allowed

log = logging.getLogger(__name__)


class UploadHandlers:
    def __init__(self, config: UploadServerConfig, processor: Processor, gate: UploadGate) -> None:
        self._config = config
        self._processor = processor
        self._gate = gate
        self._settle = functools.partial(settle, gate)
        self._resumable = ResumableUploads(processor, gate, config.resume_timeout, self._settle)
        self._clone = CloneTarget(config, gate)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", up.HEALTHZ_PATH, self._healthz)
        for endpoint in up.SERVER_ENDPOINTS:
            app.router.add_route("*", endpoint.path, functools.partial(self._dispatch, endpoint))
        for method, path, handler in self._clone.routes():
            app.router.add_route(method, path, functools.partial(self._guarded, handler))
        return app

    async def close(self) -> None:
        await self._resumable.close()
        await self._clone.close()

    async def _guarded(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        if not self._client_ok(request):
            log.warning("refused %s %s: no client certificate for %s", request.method, request.path,
                        self._config.client_name)
            return web.Response(status=401, text="Unauthorized")
        return await handler(request)

    @staticmethod
    async def _healthz(_request: web.Request) -> web.Response:
        return web.Response(text="OK")

    def _client_ok(self, request: web.Request) -> bool:
        if self._config.tls is None:
            return True  # plain-HTTP test mode has no certificates to check
        transport = request.transport
        peercert: Any = transport.get_extra_info("peercert") if transport is not None else None
        return client_allowed(peercert, self._config.client_name)

    async def _dispatch(self, endpoint: up.Endpoint, request: web.Request) -> web.StreamResponse:
        if endpoint.mode is up.Mode.ASYNC and request.method == "HEAD":
            return web.Response(status=200)
        chunked = endpoint.mode is up.Mode.CHUNK
        if not chunked and request.method != "POST":
            return web.Response(status=404, text="404 page not found")
        if not self._client_ok(request):
            log.warning("refused %s %s: no client certificate for %s", request.method, request.path,
                        self._config.client_name)
            return web.Response(status=401, text="Unauthorized")
        if endpoint.archive and self._processor.block_target:
            return web.Response(status=400, text="content type archive needs a Filesystem volume, not a Block "
                                                 "volume")
        if chunked:
            return await self._resumable.handle(request, endpoint.archive)
        return await self._upload(endpoint, request)

    async def _upload(self, endpoint: up.Endpoint, request: web.Request) -> web.Response:
        try:
            self._gate.acquire(endpoint.path)
        except GateClosed as e:
            return web.Response(status=e.status, text=e.message)
        try:
            body = await form_file(request) if endpoint.body is up.Body.FORM else raw_body(request)
            processing = self._start(body, endpoint, request)
        except (FormError, TransferInterrupted) as e:
            self._gate.release()
            return web.Response(status=400, text=str(e))
        except (ConfigurationError, OSError) as e:
            self._gate.release()
            return web.Response(status=500, text=f"Saving stream failed: {e}")
        log.info("upload started on %s (%s bytes)", endpoint.path, request.content_length or "unknown")
        if endpoint.mode is up.Mode.SYNC:
            await asyncio.wait({processing.task})
        else:
            await processing.until_validated()
        return self._answer(processing)

    def _start(self, body: CountedBody, endpoint: up.Endpoint, request: web.Request) -> Processing:
        total = request.content_length if endpoint.body is up.Body.RAW else None
        processing = self._processor.start(body.pieces(), archive=endpoint.archive, total=total,
                                           description=f"upload to {endpoint.path}")
        self._settle(processing)
        return processing

    @staticmethod
    def _answer(processing: Processing) -> web.Response:
        task = processing.task
        if not task.done():
            processing.acknowledged = True  # async: validated, the rest happens in the background
            log.info("upload validated; processing continues in the background")
            return web.Response(status=200)
        error = None if task.cancelled() else task.exception()
        if error is None:
            log.info("upload complete")
            return web.Response(status=200)
        status, message = http_failure(error)
        log.error("%s", message)
        return web.Response(status=status, text=message)
