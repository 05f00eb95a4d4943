"""HTTP to the API server: authentication, a client-side rate limit, JSON in and out, streams.

Credentials and TLS come from kubernetes_asyncio's `Configuration`; the requests are our own (one aiohttp
session) so that every patch type, watch stream and log read is under our control. The proxy is settled
once, as client-go does: the kubeconfig's `proxy-url`, else `HTTPS_PROXY`/`HTTP_PROXY` unless `NO_PROXY`
exempts the server. (aiohttp's `trust_env` would look the environment and `~/.netrc` up again on every
request, two thread hand-offs each: a fifth of the controllers' CPU at 1,000 DataVolumes.) With a positive
`qps`, every request takes a token from a bucket first (`qps` per second, up to `burst` at once), as
client-go's rate limiter does; watches take one token when they open. By default there is no client-side
limit: as controller-runtime does since v0.21 on SIG API Machinery's advice, the API server's Priority
and Fairness decides, and its 429 answers are retryable errors the controllers back off from.
Failures are translated by `cdi.kube.errors`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from kubernetes_asyncio.client import Configuration

from cdi.kube import errors
from cdi.proxyenv import environment_proxy

NO_LIMIT = -1.0  # a `qps` of zero or less: no client-side rate limit (client-go's -1)
DEFAULT_QPS, DEFAULT_BURST = NO_LIMIT, 0  # controller-runtime's defaults since v0.21
USER_AGENT = "pycdi"
MAX_CONNECTIONS = 100  # requests in flight at once, watches included (kubernetes_asyncio's default)
READ_BUFFER = 2 ** 21  # a watch event's line may hold an object up to etcd's 1.5 MiB request limit


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
        self._proxy = proxy_for(configuration)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=tls_context(configuration)),
            trust_env=False, read_bufsize=READ_BUFFER)
        self._bucket = TokenBucket(qps, burst)
        self.requests = 0  # requests sent, for benchmarks and tests

    @property
    def server(self) -> str:
        return str(self._configuration.host)

    async def close(self) -> None:
        await self._session.close()

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
        url = self.server + path
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = body if body is None or isinstance(body, bytes) else json.dumps(body)  # JSON is YAML too (apply)
        self.requests += 1
        try:
            response = await self._session.request(
                method, url, headers=headers, data=data, proxy=self._proxy,
                server_hostname=self._configuration.tls_server_name or None,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10) if timeout else
                aiohttp.ClientTimeout(sock_connect=10))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise errors.unreachable(self.server, e) from e
        return response


def tls_context(configuration: Configuration) -> ssl.SSLContext:
    """The TLS settings of `configuration` (CA, client certificate, verification), as kubernetes_asyncio
    sets them up."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def proxy_for(configuration: Configuration, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy every request to the API server goes through, or None: the kubeconfig's `proxy-url`,
    else the environment's proxy for the server's scheme unless `NO_PROXY` names the server
    (`cdi.proxyenv`, Go's reading, as client-go's)."""
    if configuration.proxy:
        return str(configuration.proxy)
    server = urlsplit(str(configuration.host))
    return environment_proxy(server.scheme, server.hostname or "", server.port, environ)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
