"""The HTTP(S) source: basic auth from the access-key/secret pair, a custom CA directory and the
proxy CA bundle, skip-verify, extra headers (env and secret files), redirects, proxies from the
environment, and an idle timeout.

Like upstream, credentials and extra headers are sent again after every redirect (mirrors commonly
redirect to another host), except that we never send them over plain HTTP after starting on HTTPS.
Unlike upstream, there is no HEAD request and no nbdkit pre-check: the GET's Content-Length gives
the total, and the pipeline inspects the header bytes itself. A restarted import continues with
`open_at`: `Range: bytes=N-` guarded by `If-Range` (the ETag, else Last-Modified), so a server whose
file changed answers with the whole new file, which the resume decision sees and starts over with. The wire protocol is
`importer.sources.httpwire` (h11 on asyncio streams), which starts much faster than aiohttp.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urljoin

import h11

from importer.checkpoint import SourceIdentity
from importer.config import ImporterConfig
from importer.errors import ConfigurationError, SourceUnavailable, TransferInterrupted
from importer.ranged import RangedAccess
from importer.sources import httpwire
from importer.sources.base import SourceStream
from importer.sources.tls import build_ssl_context, cert_files

log = logging.getLogger(__name__)

USER_AGENT = "cdi-python-importer"
MAX_REDIRECTS = 10
IDLE_TIMEOUT = 600.0
CONNECT_TIMEOUT = 60.0
_REDIRECTS = {301, 302, 303, 307, 308}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def byte_range(offset: int, end: int | None) -> str:
    """A Range header's value for [offset, end), or from `offset` to the end."""
    return f"bytes={offset}-{'' if end is None else end - 1}"


def parse_header_line(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise ConfigurationError(f"extra header {line.split(':')[0]!r}... is not of the form 'Name: value'")
    return name.strip(), value.strip()


def secret_header_lines(directory: Path) -> list[str]:
    """Every regular, non-hidden file under `directory` (hidden directories skipped) holds one header."""
    if not directory.is_dir():
        return []
    lines = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        lines.append(path.read_text().strip())
    return lines


class HttpSource:
    kind = "http"

    def __init__(self, config: ImporterConfig, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not config.endpoint:
            raise ConfigurationError("Unable to connect to http data source: no endpoint given")
        try:
            self._origin = httpwire.parse_target(config.endpoint)
        except httpwire.WireError as e:
            raise ConfigurationError(f"Unable to connect to http data source: {e}") from e
        self._url = config.endpoint
        self._config = config
        self._idle_timeout = idle_timeout
        self._headers = [parse_header_line(h) for h in config.extra_headers]
        self._headers += [parse_header_line(h) for h in secret_header_lines(config.extra_headers_dir)]
        self._ssl: ssl.SSLContext | None = None
        self.ranged_access: RangedAccess | None = None  # set once the server showed it honours Range

    def _ssl_context(self) -> ssl.SSLContext:
        """Built on the first https request (plain http, the common in-cluster case, never pays for
        loading the trust store)."""
        if self._ssl is None:
            self._ssl = build_ssl_context(self._config)
        return self._ssl

    def _request_headers(self, hop: httpwire.Target) -> list[tuple[str, str]]:
        headers = [("User-Agent", USER_AGENT), ("Accept", "*/*")]
        if self._origin.scheme == "https" and hop.scheme == "http":
            return headers  # never leak credentials or secret headers on a downgrade to plain HTTP
        headers += self._headers
        if self._config.has_credentials:
            headers.append(("Authorization", httpwire.basic_auth(self._config.access_key_id, self._config.secret_key)))
        elif hop.username is not None:
            headers.append(("Authorization", httpwire.basic_auth(hop.username, hop.password or "")))
        return headers

    @asynccontextmanager
    async def open(self) -> AsyncIterator[SourceStream]:
        async with self._open([]) as stream:
            yield stream

    @asynccontextmanager
    async def open_at(self, offset: int, identity: SourceIdentity,
                      end: int | None = None) -> AsyncIterator[SourceStream]:
        validator = identity.etag if identity.etag and not identity.etag.startswith("W/") else identity.last_modified
        headers = [("Range", byte_range(offset, end))] + ([("If-Range", validator)] if validator else [])
        async with self._open(headers) as stream:
            yield stream

    @asynccontextmanager
    async def _open(self, extra: list[tuple[str, str]]) -> AsyncIterator[SourceStream]:
        response = await self._get(extra)
        try:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("text/") and self._config.content_type == "kubevirt":
                log.warning("Unexpected content type '%s'. Content might not be a KubeVirt image.", content_type)
            start, total = self._extent(response)
            yield SourceStream(self._chunks(response), total, self._origin.url,
                               identity=self._identity(response, total), start=start)
        finally:
            response.close()

    @staticmethod
    def _extent(response: httpwire.Response) -> tuple[int, int | None]:
        """Where the body starts in the file, and the file's whole size."""
        if response.status != 206:
            return 0, response.content_length
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match is None:
            raise SourceUnavailable("Unable to connect to http data source: a 206 response without a usable "
                                    f"Content-Range ({response.headers.get('content-range')!r})")
        return int(match[1]), None if match[3] == "*" else int(match[3])

    def _identity(self, response: httpwire.Response, total: int | None) -> SourceIdentity | None:
        """Which version of the file this is; None unless the server honours ranges for it."""
        if self.ranged_access is None and response.status != 206:
            return None
        return SourceIdentity(self._origin.url, response.headers.get("etag"), response.headers.get("last-modified"),
                              total)

    async def _get(self, extra: list[tuple[str, str]]) -> httpwire.Response:
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            hop = httpwire.parse_target(url)
            try:
                response = await httpwire.get(url, self._request_headers(hop) + extra, ssl_context=self._ssl_context,
                                              connect_timeout=CONNECT_TIMEOUT, idle_timeout=self._idle_timeout)
            except (TimeoutError, OSError, ssl.SSLError, h11.ProtocolError, httpwire.WireError) as e:
                raise SourceUnavailable(f"Unable to connect to http data source: HTTP request errored: "
                                        f"{type(e).__name__}: {e or 'timed out'}") from e
            if response.status in _REDIRECTS and "location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["location"])
                try:
                    log.info("following redirect to %s", httpwire.parse_target(url).url)
                except httpwire.WireError as e:
                    raise SourceUnavailable(f"Unable to connect to http data source: bad redirect: {e}") from e
                continue
            if response.status != 200 and not (response.status == 206 and extra):
                response.close()
                raise SourceUnavailable(f"Unable to connect to http data source: expected status code 200, "
                                        f"got {response.status}. Status: {response.status} {response.reason}")
            self.ranged_access = self._ranged(hop, response) if response.status == 200 else None
            return response
        raise SourceUnavailable(f"Unable to connect to http data source: more than {MAX_REDIRECTS} redirects")

    def _ranged(self, hop: httpwire.Target, response: httpwire.Response) -> RangedAccess | None:
        """How nbdkit could read this response's URL in place, if the server honours Range."""
        ranges = "bytes" in response.headers.get("accept-ranges", "").lower()
        if not ranges or response.content_length is None or "content-encoding" in response.headers:
            return None
        if self._origin.scheme == "https" and hop.scheme == "http":  # downgraded: nothing secret goes along
            return RangedAccess(hop.url, response.content_length, insecure=self._config.insecure_tls)
        username, password = ((self._config.access_key_id, self._config.secret_key) if self._config.has_credentials
                              else (hop.username, hop.password))
        return RangedAccess(hop.url, response.content_length, (("User-Agent", USER_AGENT), *self._headers),
                            username, password, self._config.insecure_tls,
                            (*cert_files(self._config.proxy_cert_dir), *cert_files(self._config.cert_dir)))

    @staticmethod
    async def _chunks(response: httpwire.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.body():
                yield chunk
        except h11.RemoteProtocolError as e:
            raise TransferInterrupted(f"failed to pull image: unexpected EOF ({e})") from e
        except (TimeoutError, OSError, ssl.SSLError, h11.ProtocolError, httpwire.WireError) as e:
            reason = str(e) or "no data within the idle timeout"
            raise TransferInterrupted(f"failed to pull image: {type(e).__name__}: {reason}") from e
