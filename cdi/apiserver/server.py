"""cdi-apiserver's HTTPS application: webhooks, the aggregated upload token API, discovery and health.

`ApiServer` holds what the handlers need — the cluster (for SubjectAccessReviews and the webhooks'
reads), the signing key (the clone tokens of the datavolume-mutate webhook; upload tokens too, unless
`upload_key` gives the rotating ring's current key, `cdi.apiserver.uploadkeys`), the front proxy we
trust and a clock — and builds the aiohttp application;
`serving_context` is its TLS (our serving certificate; client certificates requested, and verified
against the request-header CA when there is one); `start` binds it. Routes:

    POST /datavolume-validate, /datavolume-mutate, ...        cdi.apiserver.webhooks
    GET  /apis, /apis/upload.cdi.kubevirt.io[/v1beta1]        discovery (open)
    GET  /openapi/v2, /openapi/v3[/apis/...]                  schema (open)
    POST /apis/upload.cdi.kubevirt.io/v1beta1/namespaces/{namespace}/uploadtokenrequests
    GET  /healthz, /readyz

A token request is authenticated as the front proxy's (`cdi.apiserver.frontproxy`), authorized by a
SubjectAccessReview created through the `Cluster` seam, and answered by the pure
`cdi.apiserver.tokenrequest` with 200 and the request echoed with `status.token`, as upstream answers.
Failures are `v1` Status objects (`cdi.apiserver.status`); the serving certificate and the front-proxy
CA are read once, at start.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from cdi.admission import admit
from cdi.apiserver import discovery
from cdi.apiserver.frontproxy import RequestHeaderAuth, access_review, authenticate, check_access
from cdi.apiserver.status import decode_object, status_object
from cdi.apiserver.tokenrequest import answer_token_request
from cdi.apiserver.webhooks import Admit, Webhooks
from cdi.cluster.errors import ApiError, Forbidden, ServerError, Unauthorized
from cdi.cluster.protocol import Cluster, Object
from cdi.tokens import DEFAULT_LIFETIME, CloneTokens, SigningKey

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiServer:
    def __init__(self, cluster: Cluster, signing_key: SigningKey, auth: RequestHeaderAuth | None, *,
                 clock: Callable[[], datetime] = _utc_now, judge: Admit = admit,
                 lifetime: float = DEFAULT_LIFETIME,
                 upload_key: Callable[[], Awaitable[SigningKey]] | None = None) -> None:
        self._cluster, self._key, self._auth, self._clock = cluster, signing_key, auth, clock
        self._upload_key = upload_key
        clone_tokens = CloneTokens.from_key(signing_key, lifetime=lifetime)
        self._webhooks = Webhooks(cluster, judge=judge, clone_tokens=clone_tokens,
                                  clock=lambda: self._clock().timestamp())
        self._lifetime = lifetime

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self._webhooks.routes())
        app.add_routes([
            web.get("/apis", _json(discovery.api_group_list)),
            web.get(f"/apis/{discovery.GROUP}", _json(discovery.api_group)),
            web.get(f"/apis/{discovery.GROUP_VERSION}", _json(discovery.api_resource_list)),
            web.get("/openapi/v2", _json(discovery.openapi_v2)),
            web.get("/openapi/v3", _json(discovery.openapi_v3_root)),
            web.get(f"/openapi/v3/{discovery.OPENAPI_V3_PATH}", _json(discovery.openapi_v3)),
            web.post(discovery.RESOURCE_PATH, self.upload_token),
            web.get("/healthz", _ok), web.get("/readyz", _ok),
        ])
        return app

    async def upload_token(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        try:
            user = authenticate(_peer_certificate(request), request.headers.items(), self._auth, self._clock())
            try:
                answer = await self._cluster.create(access_review(user, namespace))
            except ApiError as e:
                raise ServerError(f"could not authorize the request: {e.message}") from e
            check_access(answer, user, namespace)
            body = decode_object(await request.read(), "UploadTokenRequest")
            key = await self._upload_key() if self._upload_key is not None else self._key
            issued = answer_token_request(body, namespace, key, self._clock().timestamp(), self._lifetime)
        except ApiError as error:
            return _failure(error)
        log.info("issued an upload token for %s/%s to %s", namespace, issued["spec"]["pvcName"], user.name)
        return web.json_response(issued)


def _failure(error: ApiError) -> web.Response:
    if isinstance(error, Unauthorized | Forbidden):
        log.info("refused an UploadTokenRequest: %s", error.message)
    details = {"group": discovery.GROUP, "kind": discovery.INFO.plural} if isinstance(error, Forbidden) else {}
    return web.json_response(status_object(error, **details), status=error.code)


def _json(document: Callable[[], Object]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document())
    return handler


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


def serving_context(cert_file: Path, key_file: Path, auth: RequestHeaderAuth | None) -> ssl.SSLContext:
    """TLS 1.2+ with our certificate; a client certificate is asked for and must chain to the front-proxy CA
    (the system's CAs are deliberately not trusted for client certificates)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if auth is not None:
        context.load_verify_locations(cadata=auth.ca_pem)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def start(server: ApiServer, host: str, port: int, context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    """Serve on `host:port` (0 picks a free port); returns the runner (`cleanup()` stops it) and the port."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)
