"""The GCS source (IMPORTER_SOURCE=gcs): one streaming media download through the JSON API, verified
against the hashes Cloud Storage keeps for the object.

URLs, as upstream accepts them: `gs://bucket/object/path`, or `http(s)://host/bucket/object/path`
where the API is served at `scheme://host` (Google's `https://storage.googleapis.com/...`, or any
GCS-compatible server). Also understood: `https://bucket.storage.googleapis.com/object` and the
console's `https://storage.cloud.google.com/bucket/object`, both read through Google's API host.
Endpoint override: STORAGE_EMULATOR_HOST (`host:port` or a URL; the variable Google's own client
libraries honour) replaces the API host for every URL form, so `gs://` URLs can be served by an
emulator or a private GCS-compatible server. Credentials: GOOGLE_APPLICATION_CREDENTIALS
(`importer.sources.gcscredentials`), anonymous without it. Trust: `importer.sources.tls`.

Integrity: Cloud Storage sends `x-goog-hash: crc32c=...,md5=...` with the download. We verify MD5
(present for every object not built by `compose`) while streaming, else CRC-32C when the C
extension of google-crc32c is installed. We ask for the stored bytes (`Accept-Encoding: gzip`), so
a gzip-encoded object arrives as stored (the pipeline decompresses it) and its hashes still apply;
a response transcoded anyway (its encoding differs from `x-goog-stored-content-encoding`) is not
checked against them, and the log says so. Upstream's 60 s deadline for the whole read is not
copied: we bound connecting and idle reads instead.

A restarted import continues with `open_at`: the object's metadata (generation, md5Hash, size) tells
the resume decision whether it is still the checkpointed object, and a ranged media download pinned
to that generation (`ifGenerationMatch`) reads the rest. The stored hashes cover the whole object, so
they are not checked on a resumed read (the log says so); the user's checksum still covers it all.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from importer.checkpoint import SourceIdentity
from importer.config import ImporterConfig
from importer.errors import ConfigurationError, SourceUnavailable, TransferInterrupted
from importer.sources.base import SourceStream
from importer.sources.gcscredentials import GoogleCredentials, fetch_access_token, load_credentials
from importer.sources.objectstore import StoredDigest, checked_stream, computable, decode_digest
from importer.sources.tls import build_ssl_context

log = logging.getLogger(__name__)

GOOGLE_API = "https://storage.googleapis.com"
_GOOGLE_HOSTS = ("storage.googleapis.com", "storage.cloud.google.com")
_VIRTUAL_HOST_SUFFIX = ".storage.googleapis.com"
USER_AGENT = "cdi-python-importer"
READ_SIZE = 1 << 20
CONNECT_TIMEOUT = 60.0
IDLE_TIMEOUT = 600.0


@dataclass(frozen=True)
class GcsLocation:
    api: str  # scheme://host[:port] serving the JSON API
    bucket: str
    name: str

    @property
    def media_url(self) -> str:
        return f"{self.api}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(self.name, safe='')}?alt=media"

    @property
    def metadata_url(self) -> str:
        return f"{self.api}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(self.name, safe='')}"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def __str__(self) -> str:
        return self.uri if self.api == GOOGLE_API else f"{self.uri} at {self.api}"


def emulator_api(value: str) -> str:
    """STORAGE_EMULATOR_HOST as Google's libraries read it: a URL, or host:port meaning http."""
    value = value.strip().rstrip("/")
    return value if "://" in value else f"http://{value}"


def parse_gcs_url(url: str, emulator_host: str = "") -> GcsLocation:
    if not url:
        raise ConfigurationError("Unable to connect to gcs data source: no endpoint given")
    parts = urlsplit(url)
    if parts.scheme == "gs":
        api, bucket, name = GOOGLE_API, parts.netloc, parts.path.lstrip("/")
    elif parts.scheme in ("http", "https") and parts.hostname:
        host, path = parts.hostname, unquote(parts.path).lstrip("/")
        if host.endswith(_VIRTUAL_HOST_SUFFIX):
            api, bucket, name = GOOGLE_API, host[:-len(_VIRTUAL_HOST_SUFFIX)], path
        else:
            api = GOOGLE_API if host in _GOOGLE_HOSTS else f"{parts.scheme}://{parts.netloc}"
            bucket, _, name = path.partition("/")
    else:
        raise ConfigurationError(f"Unable to connect to gcs data source: {url} is neither gs://bucket/object "
                                 f"nor http(s)://host/bucket/object")
    if not bucket or not name:
        raise ConfigurationError(f"Unable to connect to gcs data source: {url} names no object")
    if emulator_host:
        api = emulator_api(emulator_host)
    return GcsLocation(api, bucket, name)


def _hash_values(values: list[str]) -> dict[str, str]:
    """`x-goog-hash` values (sent as one comma-joined header or several) as {algorithm: base64}."""
    hashes: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            name, sep, encoded = item.strip().partition("=")
            if sep:
                hashes[name.strip().lower()] = encoded.strip()
    return hashes


def stored_digest(hash_headers: list[str], served_encoding: str, stored_encoding: str | None
                  ) -> tuple[StoredDigest | None, str]:
    """The digest to verify for a download, or None and the reason there is none."""
    served = (served_encoding or "identity").lower()
    if stored_encoding is not None and (stored_encoding or "identity").lower() != served:
        return None, f"the object is stored with Content-Encoding {stored_encoding} but was served as {served}"
    hashes = _hash_values(hash_headers)
    for algorithm in ("md5", "crc32c"):
        raw = decode_digest(algorithm, hashes.get(algorithm, ""))
        if raw is not None and computable(algorithm):
            return StoredDigest(algorithm, raw, f"GCS {'md5Hash' if algorithm == 'md5' else 'crc32c'}"), ""
    if decode_digest("crc32c", hashes.get("crc32c", "")) is not None:
        return None, "the object (a composite) has only a CRC-32C, and google-crc32c's C extension is not installed"
    return None, "the server sent no usable x-goog-hash" if hashes else "the server sent no x-goog-hash"


class GcsSource:
    kind = "gcs"

    def __init__(self, config: ImporterConfig, *, idle_timeout: float = IDLE_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> None:
        self._location = parse_gcs_url(config.endpoint, config.storage_emulator_host)
        self._credentials: GoogleCredentials | None = (
            load_credentials(config.google_credentials) if config.google_credentials else None)
        self._config = config
        self._idle_timeout = idle_timeout
        self._clock = clock

    @asynccontextmanager
    async def open(self) -> AsyncIterator[SourceStream]:
        async with self._open(None) as stream:
            yield stream

    @asynccontextmanager
    async def open_at(self, offset: int, identity: SourceIdentity,
                      end: int | None = None) -> AsyncIterator[SourceStream]:
        async with self._open(offset, end) as stream:
            yield stream

    @asynccontextmanager
    async def _open(self, offset: int | None, end: int | None = None) -> AsyncIterator[SourceStream]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=self._idle_timeout)
        connector = aiohttp.TCPConnector(ssl=build_ssl_context(self._config))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True,
                                         auto_decompress=False) as session:
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
            if self._credentials is not None:
                token = await fetch_access_token(session, self._credentials, self._clock())
                headers["Authorization"] = f"Bearer {token}"
                log.info("%s: reading as %s", self._location, self._credentials)
            else:
                log.info("%s: no credentials, reading anonymously", self._location)
            if offset is None:
                response = await self._get(session, headers)
                identity, start, total = _identity(self._location, response), 0, response.content_length
                found = stored_digest(response.headers.getall("x-goog-hash", []),
                                      response.headers.get("Content-Encoding", ""),
                                      response.headers.get("x-goog-stored-content-encoding"))
            else:
                identity = await self._metadata(session, headers)
                byte_range = f"bytes={offset}-{'' if end is None else end - 1}"
                response = await self._get(session, {**headers, "Range": byte_range}, identity.version)
                start, total = _extent(response), identity.size
                found = None, f"the import resumed at byte {start}, and the stored hashes cover the whole object"
            try:
                async with checked_stream(self._read(response), found, what=self._location.uri,
                                          total=total, description=str(self._location),
                                          user_checksum=bool(self._config.checksum),
                                          identity=identity, start=start) as stream:
                    yield stream
            finally:
                response.release()

    async def _metadata(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> SourceIdentity:
        """The object's version as its metadata says (generation, stored hash, size)."""
        location = self._location
        prefix = f'Unable to connect to gcs data source: could not get gcs object "{location.bucket}/{location.name}"'
        try:
            async with session.get(location.metadata_url, headers=headers, allow_redirects=False) as response:
                if response.status != 200:
                    raise SourceUnavailable(f"{prefix}: {response.status} {response.reason}"
                                            f"{await _error_detail(response)}")
                doc = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            raise SourceUnavailable(f"{prefix}: {type(e).__name__}: {e}") from e
        digest = f"md5={doc['md5Hash']}" if doc.get("md5Hash") else (
            f"crc32c={doc['crc32c']}" if doc.get("crc32c") else None)
        size = doc.get("size")
        return SourceIdentity(location.uri, digest=digest, size=int(size) if size is not None else None,
                              version=str(doc["generation"]) if doc.get("generation") else None)

    async def _get(self, session: aiohttp.ClientSession, headers: dict[str, str],
                   generation: str | None = None) -> aiohttp.ClientResponse:
        location = self._location
        prefix = f'Unable to connect to gcs data source: could not get gcs object "{location.bucket}/{location.name}"'
        url = location.media_url + (f"&ifGenerationMatch={generation}" if generation else "")
        try:
            response = await session.get(url, headers=headers, allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise SourceUnavailable(f"{prefix}: {type(e).__name__}: {e}") from e
        if response.status not in (200, 206) or (response.status == 206 and "Range" not in headers):
            detail = await _error_detail(response)
            response.release()
            raise SourceUnavailable(f"{prefix}: {response.status} {response.reason}{detail}")
        return response

    async def _read(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_chunked(READ_SIZE):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise TransferInterrupted(f"failed to read gcs object: {type(e).__name__}: {e}") from e


def _identity(location: GcsLocation, response: aiohttp.ClientResponse) -> SourceIdentity:
    """A download's version: its generation and stored hash (md5, else crc32c) as the headers say."""
    hashes = _hash_values(response.headers.getall("x-goog-hash", []))
    digest = f"md5={hashes['md5']}" if "md5" in hashes else (f"crc32c={hashes['crc32c']}" if "crc32c" in hashes
                                                             else None)
    return SourceIdentity(location.uri, digest=digest, size=response.content_length,
                          version=response.headers.get("x-goog-generation"))


def _extent(response: aiohttp.ClientResponse) -> int:
    """Where a ranged download starts in the object (0 for the whole object)."""
    if response.status != 206:
        return 0
    match = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", response.headers.get("Content-Range", "").strip())
    if match is None:
        raise SourceUnavailable(f"Unable to connect to gcs data source: a 206 response without a usable "
                                f"Content-Range ({response.headers.get('Content-Range')!r})")
    return int(match[1])


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The JSON API's error message (`{"error": {"message": ...}}`), or the start of the body."""
    try:
        body = await response.content.read(16 * 1024)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return ""
    text = body.decode(errors="replace").strip()
    try:
        message = json.loads(text)["error"]["message"]
        return f": {message}"
    except (ValueError, KeyError, TypeError):
        return f": {text[:300]}" if text else ""
