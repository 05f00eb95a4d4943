"""Streams one authorised upload request to its upload server over mutual TLS and relays the answer.

The request body goes out as aiohttp's stream payload over the incoming `StreamReader`: bytes move
only as fast as the upload server takes them (its TCP window closes, our writes wait, we stop
reading, the client's window closes), so the proxy holds a few buffers per upload, never an image.
Method, path, query and end-to-end headers pass through; hop-by-hop headers and `Expect` do not.

Readiness (upstream's `uploadReady`): while the resolver says `UploadNotReady`, or the upload server
refuses connections (the embedded runner reports a pod running before it listens), we try again
every `interval` seconds (0.25) for up to `timeout` (10); no body byte has been read at that point, so retrying
is safe. Then 503 with the HTML-escaped reason (502 for a server that never accepted a connection, as
upstream's reverse proxy). `NotAnUploadTarget` is 503 at once; `AlreadyUploaded` also carries
`X-Upload-Phase: Succeeded`, and is 409 on the resumable endpoint (ours, so the client can tell "done"
from "down"). A PVC whose content type is `archive`
gets its requests rewritten to the archive endpoints (upstream). Used by `uploadproxy.app`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from cdi.contracts import upload_protocol as up
from uploadproxy.resolver import AlreadyUploaded, NotAnUploadTarget, UploadNotReady, UploadTarget, UploadTargetResolver

log = logging.getLogger(__name__)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "expect", "host", "content-length"})
MAX_ANSWER = 1 << 20
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=24 * 3600, sock_connect=10)


@dataclass(frozen=True)
class Readiness:
    timeout: float = 10.0
    interval: float = 0.25  # a fresh upload server listens within about a second: do not add another


class _NotListening(Exception):
    """The upload server refused the connection: nothing was sent, so the request may be retried."""


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)  # keep Content-Length framing end to end
    return headers


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, resolver: UploadTargetResolver,
                 client_ssl: Callable[[], ssl.SSLContext], readiness: Readiness) -> None:
        self._session = session
        self._resolver = resolver
        self._client_ssl = client_ssl
        self._readiness = readiness

    async def send(self, request: web.Request, namespace: str, pvc: str) -> web.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._readiness.timeout
        while True:
            try:
                return await self._attempt(request, await self._resolver.resolve(namespace, pvc))
            except AlreadyUploaded as e:
                chunked = request.path == up.CHUNK_PATH
                return web.Response(status=up.ALREADY_UPLOADED_STATUS if chunked else 503, text=html.escape(e.message),
                                    headers={up.PHASE_HEADER: up.PHASE_SUCCEEDED})
            except NotAnUploadTarget as e:
                return web.Response(status=503, text=html.escape(e.message))
            except UploadNotReady as e:
                status, reason = 503, html.escape(e.message)
            except _NotListening as e:
                status, reason = 502, f"error in upload-proxy: {html.escape(str(e))}"
            if loop.time() + self._readiness.interval > deadline:
                log.warning("upload to %s/%s: gave up waiting: %s", namespace, pvc, reason)
                return web.Response(status=status, text=reason)
            await asyncio.sleep(self._readiness.interval)

    async def _attempt(self, request: web.Request, target: UploadTarget) -> web.Response:
        path = up.archive_path(request.path) if target.archive else request.path
        url = target.url.rstrip("/") + path + (f"?{request.query_string}" if request.query_string else "")
        data = request.content if request.body_exists else None
        try:
            async with self._session.request(
                    request.method, url, headers=_request_headers(request), data=data, ssl=self._client_ssl(),
                    server_hostname=target.server_hostname, allow_redirects=False,
                    timeout=UPSTREAM_TIMEOUT) as answer:
                body = await _read_answer(answer.content)
                headers = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP)
                return web.Response(status=answer.status, body=body, headers=headers)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
            return _bad_gateway(e)
        except aiohttp.ClientConnectorError as e:
            raise _NotListening(str(e)) from e
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return _bad_gateway(e)


async def _read_answer(content: aiohttp.StreamReader) -> bytes:
    """The upload server's answer (a status text or JSON), at most `MAX_ANSWER` bytes of it."""
    parts: list[bytes] = []
    size = 0
    while size < MAX_ANSWER and (piece := await content.read(MAX_ANSWER - size)):
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


def _bad_gateway(error: BaseException) -> web.Response:
    log.warning("upload proxy error: %s", error)
    return web.Response(status=502, text=f"error in upload-proxy: {html.escape(str(error) or type(error).__name__)}")
