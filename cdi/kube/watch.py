"""The watch stream of the Kubernetes backend: endless, like the embedded store's.

The API server sends one JSON event per line and ends a watch after a while (`timeoutSeconds`); this
stream reopens it from the last resourceVersion it delivered (an event's or a bookmark's), so a
consumer sees one unbroken sequence. An ERROR event carries a Status: 410 becomes `Gone` (the consumer
relists, as an informer does), anything else the translated error. BOOKMARK events are passed on only
when the consumer asked for them; they always move the resume point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from cdi.cluster.protocol import WatchEvent
from cdi.kube import errors
from cdi.kube.transport import Transport

WATCH_TIMEOUT = 300  # seconds the server keeps one watch request open before we reopen it
_MAX_LINE = 64 * 1024 * 1024


class KubeWatchStream(AsyncIterator[WatchEvent]):
    def __init__(self, transport: Transport, path: str, query: Mapping[str, Any], *, resource_version: str,
                 api_version: str, kind: str, bookmarks: bool) -> None:
        self._transport, self._path, self._query = transport, path, dict(query)
        self._resource_version = resource_version
        self._api_version, self._kind, self._bookmarks = api_version, kind, bookmarks
        self._response: aiohttp.ClientResponse | None = None
        self._done = False

    def __aiter__(self) -> KubeWatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._done:
            if self._response is None:
                self._response = await self._open()
            line = await self._response.content.readline()
            if not line:
                self._response.close()
                self._response = None  # the server ended this request: reopen where we are
                continue
            event = self._event(json.loads(line))
            if event is not None:
                return event
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._done = True
        if self._response is not None:
            self._response.close()
            self._response = None

    async def _open(self) -> aiohttp.ClientResponse:
        query = {**self._query, "watch": True, "allowWatchBookmarks": True, "timeoutSeconds": WATCH_TIMEOUT,
                 "resourceVersion": self._resource_version or None}
        response = await self._transport.open("GET", self._path, query=query, timeout=None)
        if not 200 <= response.status <= 299:
            body = await response.read()
            response.close()
            self._done = True
            raise errors.from_response(response.status, body, response.headers.get("Retry-After"))
        return response

    def _event(self, doc: dict[str, Any]) -> WatchEvent | None:
        type_, obj = doc.get("type"), doc.get("object") or {}
        if type_ == "ERROR":
            self._done = True
            raise errors.from_status(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._resource_version = str(version)
        if type_ == "BOOKMARK":
            if not self._bookmarks:
                return None
            return WatchEvent("BOOKMARK", {"apiVersion": self._api_version, "kind": self._kind,
                                           "metadata": {"resourceVersion": str(version or "")}})
        obj.setdefault("apiVersion", self._api_version)
        obj.setdefault("kind", self._kind)
        return WatchEvent(type_, obj)  # type: ignore[arg-type]
