"""The upload proxy's HTTP application: upstream's routes, CORS, token check, then the forwarder.

Routes: /healthz (any method, "OK") and `PROXY_ENDPOINTS` (upstream's sync, async, form and form-async
paths in v1beta1 and v1alpha1, plus our resumable chunk path); archive paths are reached only by
the content-type rewrite, so a direct request to them is 404, as upstream.

CORS as upstream's `cors.AllowAll()`: every response carries `Access-Control-Allow-Origin: *`; a
preflight (OPTIONS with Access-Control-Request-Method) is answered 200 here, never forwarded,
allowing HEAD, GET, POST, PUT, PATCH and DELETE and whatever headers were asked for, without
credentials. We also expose the resumable protocol's response headers to browsers.

`build_app` is the factory `cdi serve` uses to run the proxy in-process with its own resolver;
`uploadproxy.main` wraps it for the standalone `cdi-uploadproxy`.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from cdi.contracts.upload_protocol import (
    HEALTHZ_PATH,
    MAX_CHUNK_HEADER,
    OFFSET_HEADER,
    PHASE_HEADER,
    PROXY_ENDPOINTS,
    TARGET_HEADER,
)
from cdi.tokens import TokenVerifier
from uploadproxy.auth import AuthFailure, authorize
from uploadproxy.forward import Forwarder, Readiness
from uploadproxy.resolver import UploadTargetResolver

log = logging.getLogger(__name__)
ALLOWED_METHODS = ("HEAD", "GET", "POST", "PUT", "PATCH", "DELETE")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("upload_client_session", aiohttp.ClientSession)


@web.middleware
async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    wanted = request.headers.get("Access-Control-Request-Method", "").upper()
    if request.method != "OPTIONS" or not wanted:
        return await handler(request)
    headers = {"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
    if wanted in ALLOWED_METHODS:
        headers["Access-Control-Allow-Methods"] = wanted
    if asked := request.headers.get("Access-Control-Request-Headers"):
        headers["Access-Control-Allow-Headers"] = asked
    return web.Response(status=200, headers=headers)


async def _cors_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
    response.headers.setdefault("Access-Control-Expose-Headers", f"{OFFSET_HEADER}, {MAX_CHUNK_HEADER}, {PHASE_HEADER}")


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


class UploadProxyHandler:
    def __init__(self, app: web.Application, resolver: UploadTargetResolver, verifier: Callable[[], TokenVerifier],
                 client_ssl: Callable[[], ssl.SSLContext], clock: Callable[[], float], readiness: Readiness) -> None:
        self._app = app
        self._resolver = resolver
        self._verifier = verifier
        self._client_ssl = client_ssl
        self._clock = clock
        self._readiness = readiness

    async def handle(self, request: web.Request) -> web.Response:
        try:
            claims = authorize(self._verifier(), request.headers.get("Authorization"), self._clock(),
                               request.headers.get(TARGET_HEADER))
        except AuthFailure as e:
            log.warning("%s %s refused (%d): %s", request.method, request.path, e.status, e.message)
            return web.Response(status=e.status, text=e.message)
        forwarder = Forwarder(self._app[_SESSION], self._resolver, self._client_ssl, self._readiness)
        response = await forwarder.send(request, claims.namespace, claims.name)
        log.info("%s %s for %s/%s: %d", request.method, request.path, claims.namespace, claims.name, response.status)
        return response


def build_app(resolver: UploadTargetResolver, verifier: Callable[[], TokenVerifier],
              client_ssl: Callable[[], ssl.SSLContext], *, clock: Callable[[], float] = time.time,
              readiness: Readiness | None = None) -> web.Application:
    """The proxy application. `verifier` and `client_ssl` are called per request, so rotated keys and
    certificates apply at once; `clock` gives seconds since the epoch for token expiry."""
    app = web.Application(middlewares=[cors_preflight])
    app.on_response_prepare.append(_cors_headers)

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False) as session:
            app[_SESSION] = session
            yield

    app.cleanup_ctx.append(client_session)
    handler = UploadProxyHandler(app, resolver, verifier, client_ssl, clock, readiness or Readiness())
    app.router.add_route("*", HEALTHZ_PATH, _healthz)
    for endpoint in PROXY_ENDPOINTS:
        app.router.add_route("*", endpoint.path, handler.handle)
    return app
