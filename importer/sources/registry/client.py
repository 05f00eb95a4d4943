"""A minimal OCI / Docker distribution v2 client on aiohttp: ping, manifests and blobs.

* Scheme: HTTPS, trusting the CA ConfigMap and proxy CAs (`importer.sources.tls`); with
  `INSECURE_TLS` (insecureSkipVerify, or the host listed in CDIConfig `insecureRegistries`)
  verification is off and, as containers/image does, plain HTTP is tried when HTTPS cannot connect.
* Auth: a 401 is answered by `auth.Authorizer` and the request retried once per new challenge.
  Credentials go only to the registry's own origin; blob redirects to storage hosts get none.
* Errors: every failure to reach or use the registry is `ImagePullFailed` ("failed to pull image: ..."),
  with the registry's own error code and message when it sent one. A body cut short while streaming
  is `TransferInterrupted`. Both are retryable, as upstream's pod restarts are.

`importer.sources.registry.remote` turns this into the image store the resolver and layer walk use.
"""

from __future__ import annotations

import json
from types import TracebackType

import aiohttp
from yarl import URL

from importer.config import ImporterConfig
from importer.errors import ImagePullFailed, TransferInterrupted
from importer.sources.registry.auth import Authorizer, Credentials
from importer.sources.registry.blobs import read_limited
from importer.sources.registry.reference import DockerReference
from importer.sources.tls import build_ssl_context

USER_AGENT = "cdi-python-importer"
MAX_REDIRECTS = 10
IDLE_TIMEOUT = 600.0
READ_BUFFER = 1 << 20
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
_REDIRECTS = {301, 302, 303, 307, 308}
_NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def registry_error(status: int, body: bytes) -> str:
    """`HTTP 404: MANIFEST_UNKNOWN: manifest unknown` from a distribution error body, if it is one."""
    try:
        errors = json.loads(body).get("errors") or []
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, TypeError):
        detail = ""
    return f"HTTP {status}" + (f": {detail}" if detail else "")


class RegistryClient:
    def __init__(self, reference: DockerReference, config: ImporterConfig, *,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.reference = reference
        self._config = config
        self._idle_timeout = idle_timeout
        credentials = Credentials(config.access_key_id, config.secret_key) if config.has_credentials else None
        self._auth = Authorizer(credentials, reference.repository, str(reference))
        self._session: aiohttp.ClientSession | None = None
        self._base = URL(f"https://{reference.api_host}")

    async def __aenter__(self) -> RegistryClient:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=self._idle_timeout)
        connector = aiohttp.TCPConnector(ssl=build_ssl_context(self._config))
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True,
                                              auto_decompress=False, read_bufsize=READ_BUFFER,
                                              headers={"User-Agent": USER_AGENT})
        try:
            await self._ping()
        except BaseException:
            await self._session.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RegistryClient used outside its context")
        return self._session

    def _fail(self, detail: str) -> ImagePullFailed:
        return ImagePullFailed(f"failed to pull image: {self.reference}: {detail}")

    async def _ping(self) -> None:
        """`GET /v2/`: pick the scheme and learn the auth challenge before asking for anything."""
        schemes = ("https", "http") if self._config.insecure_tls else ("https",)
        failure: BaseException | None = None
        for scheme in schemes:
            base = URL(f"{scheme}://{self.reference.api_host}")
            try:
                async with self.session.get(base / "v2/", allow_redirects=False) as response:
                    self._base = base
                    if response.status == 401:
                        await self._auth.answer(self.session, response.headers.get("WWW-Authenticate", ""),
                                                status=401, required=False)
                    return
            except _NETWORK_ERRORS as e:
                failure = e
        raise self._fail(f"pinging container registry {self.reference.api_host}: "
                         f"{type(failure).__name__}: {failure}") from failure

    async def get(self, path: str, *, accept: str | None = None, start: int = 0) -> aiohttp.ClientResponse:
        """GET `/v2/<repository>/<path>`, authorised, redirects followed; the caller releases the response.
        Any status but 200 is an error naming the registry's reason; with `start` (a restarted layer), a
        `Range` from there is asked for (on every hop) and 206 is fine too (`range_start` says where it began)."""
        url = self._base / "v2" / self.reference.repository / path
        answered: set[str] = set()
        redirects = 0
        while True:
            response = await self._send(url, accept, start)
            if response.status == 401 and url.origin() == self._base.origin():
                challenge = response.headers.get("WWW-Authenticate", "")
                body = await self._drain(response)
                if challenge in answered:
                    raise self._fail(f"access denied: {registry_error(401, body)}")
                answered.add(challenge)
                await self._auth.answer(self.session, challenge, status=401)
                continue
            if response.status in _REDIRECTS and "Location" in response.headers and redirects < MAX_REDIRECTS:
                redirects += 1
                await self._drain(response)
                url = url.join(URL(response.headers["Location"]))
                continue
            if response.status != 200 and not (start and response.status == 206):
                body = await self._drain(response)
                raise self._fail(f"reading {path}: {registry_error(response.status, body)}")
            return response

    async def _send(self, url: URL, accept: str | None, start: int = 0) -> aiohttp.ClientResponse:
        headers = {"Accept": accept} if accept else {}
        if start:
            headers["Range"] = f"bytes={start}-"
        if self._auth.header and url.origin() == self._base.origin():
            headers["Authorization"] = self._auth.header
        try:
            return await self.session.get(url, headers=headers, allow_redirects=False)
        except _NETWORK_ERRORS as e:
            raise self._fail(f"GET {url.with_query(None)}: {type(e).__name__}: {e}") from e

    @staticmethod
    def range_start(response: aiohttp.ClientResponse) -> int:
        """Where a blob answer starts: its Content-Range's first byte for a 206, else 0 (the whole blob)."""
        if response.status != 206:
            return 0
        unit, _, rest = response.headers.get("Content-Range", "").partition(" ")
        first = rest.partition("-")[0]
        return int(first) if unit == "bytes" and first.isdigit() else -1

    @staticmethod
    async def _drain(response: aiohttp.ClientResponse) -> bytes:
        try:
            return await response.content.read(1 << 16)
        except _NETWORK_ERRORS:
            return b""
        finally:
            response.release()

    async def read_all(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """A small body (manifest, config), refusing anything over `limit` bytes."""
        try:
            body = await read_limited(response, limit)
        except _NETWORK_ERRORS as e:
            raise TransferInterrupted(f"failed to pull image: {self.reference}: reading {what}: "
                                      f"{type(e).__name__}: {e}") from e
        finally:
            response.release()
        if len(body) > limit:
            raise self._fail(f"{what} is larger than {limit} bytes")
        return body

    async def read_chunk(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        """The next piece of a streaming body (b"" at its end)."""
        try:
            return await response.content.readany()
        except _NETWORK_ERRORS as e:
            raise TransferInterrupted(f"failed to pull image: {self.reference}: reading {what}: "
                                      f"{type(e).__name__}: {e}") from e
