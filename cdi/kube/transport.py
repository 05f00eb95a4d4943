"""HTTP to the API server: authentication, a client-side rate limit, JSON in and out, streams.

Built on kubernetes_asyncio's REST client (its TLS set-up from the `Configuration`), with our own
requests so that every patch type, watch stream and log read is under our control. With a positive
`qps`, every request takes a token from a bucket first (`qps` per second, up to `burst` at once), as
client-go's rate limiter does; watches take one token when they open. By default there is no client-side
limit: as controller-runtime does since v0.21 on SIG API Machinery's advice, the API server's Priority
and Fairness decides, and its 429 answers are retryable errors the controllers back off from.
Failures are translated by `cdi.kube.errors`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client.rest import RESTClientObject

from cdi.kube import errors

NO_LIMIT = -1.0  # a `qps` of zero or less: no client-side rate limit (client-go's -1)
DEFAULT_QPS, DEFAULT_BURST = NO_LIMIT, 0  # controller-runtime's defaults since v0.21
USER_AGENT = "pycdi"


class TokenBucket:
    """`take()` waits until a request may go: `rate` per second on average, `burst` at once (at least one).
    A `rate` of zero or less lets every request go at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._rate, self._burst = rate, float(max(1, burst))
        self._clock, self._sleep = clock, sleep
        self._tokens, self._stamp = self._burst, clock()
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return self._rate > 0

    async def take(self) -> None:
        if not self.limited:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self._rate)
                self._stamp = self._clock()
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
