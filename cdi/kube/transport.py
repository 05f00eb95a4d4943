"""HTTP to the API server: authentication, a client-side rate limit, JSON in and out, streams.

Built on kubernetes_asyncio's REST client (its TLS set-up from the `Configuration`), with our own
requests so that every patch type, watch stream and log read is under our control. Every request
takes a token from a bucket first (`qps` per second, up to `burst` at once), as client-go's rate
limiter does, so a burst of reconciles cannot flood the server; watches take one token when they open.
Failures are translated by `cdi.kube.errors`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client.rest import RESTClientObject

from cdi.kube import errors

DEFAULT_QPS, DEFAULT_BURST = 20.0, 30  # controller-runtime's defaults
USER_AGENT = "pycdi"


class TokenBucket:
    """`take()` waits until a request may go: `rate` per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._stamp = time.monotonic()
                self._tokens = 1.0
            self._tokens -= 1


class Transport:
    def __init__(self, configuration: Configuration, *, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST) -> None:
        self._configuration = configuration
        self._rest = RESTClientObject(configuration)
        self._bucket = TokenBucket(qps, burst)
        self.requests = 0  # requests sent, for benchmarks and tests

    @property
    def server(self) -> str:
        return str(self._configuration.host)

    async def close(self) -> None:
        await self._rest.close()

    async def json(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                   content_type: str = "application/json") -> Any:
        """Send a request and return its JSON answer; raise the translated error for a non-2xx status."""
        response = await self.open(method, path, query=query, body=body, content_type=content_type)
        async with response:
            data = await response.read()
            if not 200 <= response.status <= 299:
                raise errors.from_response(response.status, data, response.headers.get("Retry-After"))
        return json.loads(data) if data else None

    async def text(self, path: str, *, query: Mapping[str, Any] | None = None) -> str:
        response = await self.open("GET", path, query=query)
        async with response:
            data = await response.read()
            if not 200 <= response.status <= 299:
                raise errors.from_response(response.status, data, response.headers.get("Retry-After"))
        return data.decode("utf-8", errors="replace")

    async def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                   content_type: str = "application/json", timeout: float | None = 60.0) -> aiohttp.ClientResponse:
        """The raw response (the caller reads and closes it); transport failures are translated."""
        await self._bucket.take()
        headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": USER_AGENT}
        for setting in (await self._configuration.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        self.requests += 1
        try:
            response: aiohttp.ClientResponse = await self._rest.request(
                method, self.server + path, query_params=params, headers=headers, body=body,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10) if timeout else
                aiohttp.ClientTimeout(sock_connect=10))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise errors.unreachable(self.server, e) from e
        return response


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
