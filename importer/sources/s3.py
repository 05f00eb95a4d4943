"""The S3 source (IMPORTER_SOURCE=s3): one streaming GetObject through aiobotocore, verified against
the digest the store keeps for the object.

Endpoints follow upstream: `scheme://host[:port]/bucket/key...`, the bucket is the first path
segment and the key the rest; path-style addressing; `http` means no TLS. Region: the `<region>` of
an AWS host (`s3.<region>.amazonaws.com`, `s3-<region>...`, `s3.dualstack.<region>...`),
`us-east-1` for `s3.amazonaws.com`, else (upstream's rule) the host's first dot-label when that is a
valid region name, else `us-east-1` (an IP address, where upstream's rule yields a label the SDK
refuses). Deliberate additions: virtual-hosted AWS URLs (`https://bucket.s3.<region>.amazonaws.com/key`)
are understood, and an anonymous (unsigned) request is made when the Secret gives no keys. Trust is
the one every network source uses (`importer.sources.tls`): system store, proxy CA bundle, the
source's CA ConfigMap. Like upstream, no HEAD and no presigned URL: a strict S3 refuses a HEAD on a
URL signed for GET. Failures to get the object are `SourceUnavailable` (retried by the pod's
restarts, not by the SDK) with S3's error code and message.

Integrity: we ask for the object's flexible checksums (`x-amz-checksum-mode: ENABLED`) and verify,
while streaming, the strongest digest we can recompute over the whole object: SHA-256, SHA-1, the
ETag when it is a single-part upload's MD5 (not for SSE-KMS or SSE-C objects, whose ETag is not the
MD5), CRC-32C, CRC-32. Composite (`...-N`) checksums and multipart ETags cannot be recomputed
without the part sizes; such objects are protected only by a user checksum, and the log says so.
We add the mode header ourselves rather than pass `ChecksumMode`, which would make botocore verify
too (hashing every byte twice, and failing with its own error type).

A restarted import continues with `open_at`: a ranged GetObject guarded by `IfMatch` (the ETag the
checkpoint recorded); a changed object answers 412, and the whole object is read instead, which the
resume decision sees. The stored digest covers the whole object, so a resumed read cannot check it;
the log says so, and the user's checksum (whose state the checkpoint keeps) still covers every byte.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import botocore.exceptions  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.httpsession import AIOHTTPSession  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore import UNSIGNED

from importer.checkpoint import SourceIdentity
from importer.config import ImporterConfig
from importer.errors import ConfigurationError, SourceUnavailable, TransferInterrupted
from importer.sources.base import SourceStream
from importer.sources.objectstore import StoredDigest, checked_stream, computable, decode_digest
from importer.sources.tls import build_ssl_context

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
READ_SIZE = 1 << 20
CONNECT_TIMEOUT = 60.0
IDLE_TIMEOUT = 600.0
_AWS_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3(?:[.-](?:dualstack\.)?(?P<region>[a-z0-9-]+))?"
                       r"\.amazonaws\.com(?:\.cn)?$")
_REGION_LABEL = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)$")
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")
# Strongest first; the ETag's MD5 slots in after SHA-1.
_FLEXIBLE = (("sha256", "ChecksumSHA256"), ("sha1", "ChecksumSHA1"), ("crc32c", "ChecksumCRC32C"),
             ("crc32", "ChecksumCRC32"))
_SDK_ENCRYPTION = ("aws:kms", "aws:kms:dsse")


@dataclass(frozen=True)
class S3Location:
    endpoint_url: str
    bucket: str
    key: str
    region: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key} at {self.endpoint_url}"


def region_for(host: str) -> str:
    aws = _AWS_HOST.match(host)
    if aws:
        return aws.group("region") or DEFAULT_REGION
    label = host.split(".")[0]
    return label if _REGION_LABEL.match(label) else DEFAULT_REGION


def parse_s3_url(url: str) -> S3Location:
    if not url:
        raise ConfigurationError("Unable to connect to s3 data source: no endpoint given")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"Unable to connect to s3 data source: {url} is not an http(s)://host/bucket/key URL")
    host = parts.hostname
    path = unquote(parts.path).strip("/")
    aws = _AWS_HOST.match(host)
    if aws and aws.group("bucket"):  # virtual-hosted: the bucket is in the host name
        bucket, key = aws.group("bucket"), path
        host = host[len(bucket) + 1:]
    else:
        bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise ConfigurationError(f"Unable to connect to s3 data source: {url} names no object "
                                 f"(expected {parts.scheme}://{parts.netloc}/<bucket>/<key>)")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return S3Location(f"{parts.scheme}://{netloc}", bucket, key, region_for(host))


def stored_digest(response: dict[str, Any]) -> tuple[StoredDigest | None, str]:
    """The digest to verify for a GetObject response, or None and the reason there is none."""
    candidates: list[StoredDigest] = []
    reasons: list[str] = []
    for algorithm, field in _FLEXIBLE:
        value = str(response.get(field) or "")
        if not value:
            continue
        raw = decode_digest(algorithm, value)
        if raw is None:
            reasons.append(f"x-amz-checksum-{algorithm} {value} is a composite (per-part) checksum")
        elif not computable(algorithm):
            reasons.append(f"x-amz-checksum-{algorithm} needs a CRC-32C implementation this importer lacks")
        else:
            candidates.append(StoredDigest(algorithm, raw, f"x-amz-checksum-{algorithm}"))
    etag = str(response.get("ETag") or "").strip('"')
    if _MD5_ETAG.match(etag):
        if response.get("ServerSideEncryption") in _SDK_ENCRYPTION or response.get("SSECustomerAlgorithm"):
            reasons.append("the ETag of an SSE-KMS or SSE-C object is not its MD5")
        else:
            md5 = StoredDigest("md5", bytes.fromhex(etag), "the ETag")
            strong = [c for c in candidates if c.algorithm in ("sha256", "sha1")]
            candidates = [*strong, md5, *[c for c in candidates if c not in strong]]
    elif etag:
        reasons.append(f"ETag {etag} is that of a multipart upload")
    if candidates:
        return candidates[0], ""
    return None, "; ".join(reasons) or "the object store reported no ETag or checksum"


def _session_class(make_context: Callable[[], ssl.SSLContext]) -> type:
    class TrustingSession(AIOHTTPSession):  # type: ignore[misc]
        """aiobotocore's session, with our trust (system store + proxy CA + CA ConfigMap) as the base."""

        def _get_ssl_context(self) -> ssl.SSLContext:
            return make_context()

    return TrustingSession


def _request_checksums(request: Any, **_: Any) -> None:
    request.headers["x-amz-checksum-mode"] = "ENABLED"


def _status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _describe_client_error(error: botocore.exceptions.ClientError) -> str:
    detail = error.response.get("Error") or {}
    code = detail.get("Code") or _status(error)
    message = detail.get("Message") or ""
    return f"{code}: {message}" if message else str(code)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _extent(response: dict[str, Any]) -> tuple[int, int | None]:
    """Where a (ranged) response starts in the object, and the object's size."""
    match = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange") or "").strip())
    if match is None:
        return 0, response.get("ContentLength")
    return int(match[1]), None if match[3] == "*" else int(match[3])


def _identity(location: S3Location, response: dict[str, Any], total: int | None) -> SourceIdentity:
    modified = response.get("LastModified")
    return SourceIdentity(str(location), str(response.get("ETag") or "") or None,
                          modified.isoformat() if modified is not None else None, total,
                          version=response.get("VersionId"))


class S3Source:
    kind = "s3"

    def __init__(self, config: ImporterConfig, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._location = parse_s3_url(config.endpoint)
        self._config = config
        self._idle_timeout = idle_timeout

    def _client_config(self) -> Any:
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"}, "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": self._idle_timeout,
            # One attempt: a failed GetObject exits and the pod is restarted with backoff (as for http),
            # rather than the SDK sleeping through retries of errors that rarely heal (bad CA, 403).
            "retries": {"mode": "standard", "total_max_attempts": 1},
            "response_checksum_validation": "when_required", "request_checksum_calculation": "when_required",
            "http_session_cls": _session_class(lambda: build_ssl_context(self._config)),
        }
        if not self._config.has_credentials:
            options["signature_version"] = UNSIGNED
        return AioConfig(**options)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[SourceStream]:
        async with self._open(None) as stream:
            yield stream

    @asynccontextmanager
    async def open_at(self, offset: int, identity: SourceIdentity,
                      end: int | None = None) -> AsyncIterator[SourceStream]:
        async with self._open((offset, identity, end)) as stream:
            yield stream

    @asynccontextmanager
    async def _open(self, resume: tuple[int, SourceIdentity, int | None] | None) -> AsyncIterator[SourceStream]:
        location = self._location
        credentials = {}
        if self._config.has_credentials:
            credentials = {"aws_access_key_id": self._config.access_key_id,
                           "aws_secret_access_key": self._config.secret_key}
        else:
            log.info("%s: no access key in the Secret, reading anonymously", location)
        client_context = get_session().create_client(
            "s3", endpoint_url=location.endpoint_url, region_name=location.region,
            verify=not self._config.insecure_tls, config=self._client_config(), **credentials)
        async with client_context as client:
            client.meta.events.register("before-sign.s3.GetObject", _request_checksums)
            response = await self._get_from(client, resume)
            start, total = _extent(response)
            length = response.get("ContentLength")
            found = stored_digest(response) if start == 0 and length == total else (
                None, f"the import resumed at byte {start}, and the stored digest covers the whole object" if start
                else f"only the first {length} bytes of the object are read here, and the stored digest covers it all")
            async with response["Body"] as body, checked_stream(
                    self._read(body), found, what=f"s3://{location.bucket}/{location.key}",
                    total=total, description=str(location), user_checksum=bool(self._config.checksum),
                    identity=_identity(location, response, total), start=start) as stream:
                yield stream

    async def _get_from(self, client: Any, resume: tuple[int, SourceIdentity, int | None] | None) -> dict[str, Any]:
        """The object from the checkpoint's offset (to `end`) if it is still the same one, else all of it."""
        if resume is None or not resume[1].etag:
            return await self._get(client)
        offset, etag, end = resume[0], resume[1].etag, resume[2]
        try:
            return await self._get(client, Range=f"bytes={offset}-{'' if end is None else end - 1}", IfMatch=etag)
        except SourceUnavailable as e:
            cause = e.__cause__
            if not isinstance(cause, botocore.exceptions.ClientError) or _status(cause) not in (412, 416):
                raise
            log.info("%s: the object changed since the checkpoint (%s); reading all of it", self._location, cause)
            return await self._get(client)

    async def _get(self, client: Any, **options: str) -> dict[str, Any]:
        location = self._location
        prefix = f'Unable to connect to s3 data source: could not get s3 object: "{location.bucket}/{location.key}"'
        try:
            response: dict[str, Any] = await client.get_object(Bucket=location.bucket, Key=location.key, **options)
        except botocore.exceptions.ClientError as e:
            hint = ""
            if not self._config.has_credentials and _status(e) in (401, 403):
                hint = " (the request was anonymous: no accessKeyId/secretKey were given)"
            raise SourceUnavailable(f"{prefix}: {_describe_client_error(e)}{hint}") from e
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as e:
            raise SourceUnavailable(f"{prefix}: {type(e).__name__}: {e}") from e
        return response

    async def _read(self, body: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.iter_chunks(READ_SIZE):
                yield chunk
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as e:
            raise TransferInterrupted(f"failed to read s3 object: {type(e).__name__}: {e}") from e
