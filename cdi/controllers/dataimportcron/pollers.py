"""Asking a source whether its image changed: the `SourcePoller` protocol and the HTTP(S) and S3 pollers.

A poller turns a `PollTarget` (the cron template's source, with the Secret's keys, the CA ConfigMap's
certificates and the insecure flag resolved by the controller) into a digest string:

    registry  the manifest digest of the tag (`sha256:...`), as upstream's cdi-source-update-poller
              reads it (`cdi.controllers.dataimportcron.registry`)
    http      beyond upstream: one HEAD (a one-byte ranged GET where HEAD is refused); the strong ETag,
              else Last-Modified with Content-Length, hashed into `sha256:...` (`naming.validator_digest`)
    s3        beyond upstream: HeadObject; the versionId on a versioned bucket, else ETag and
              Last-Modified, hashed the same way

The errors and the `PollTarget`/`SourcePoller` types are in `polling`.

`POLLERS` maps source kinds to pollers; tests inject their own `SourcePoller`s.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from cdi.controllers.dataimportcron.naming import validator_digest
from cdi.controllers.dataimportcron.polling import (
    ImagePullFailed,
    NoChangeValidator,
    PollError,
    PollTarget,
    SourcePoller,
    SourceUnreachable,
    UnsupportedSource,
)

__all__ = [
    "HttpPoller",
    "ImagePullFailed",
    "NoChangeValidator",
    "PollError",
    "PollTarget",
    "S3Poller",
    "SourcePoller",
    "SourceUnreachable",
    "UnsupportedSource",
    "default_pollers",
]

TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=20)
USER_AGENT = "cdi-python-controller"


def ssl_context(target: PollTarget) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    for pem in target.ca_certificates:
        try:
            context.load_verify_locations(cadata=pem)
        except ssl.SSLError:
            continue  # a ConfigMap entry that is not a certificate: the importer skips it too
    return context


def http_validator(headers: Mapping[str, str]) -> str | None:
    """The strongest change validator in a response's headers; None when there is none."""
    etag = headers.get("ETag", "")
    if etag and not etag.startswith("W/"):
        return f"etag:{etag}"
    modified = headers.get("Last-Modified", "")
    if modified:
        return f"last-modified:{modified};length:{headers.get('Content-Length', '')}"
    return f"weak-etag:{etag}" if etag else None


class HttpPoller:
    """HEAD the URL (credentials as basic auth, extra headers, redirects followed)."""

    async def poll(self, target: PollTarget) -> str:
        headers = {"User-Agent": USER_AGENT}
        for line in target.extra_headers:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        if target.has_credentials:
            token = base64.b64encode(f"{target.access_key_id}:{target.secret_key}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        connector = aiohttp.TCPConnector(ssl=ssl_context(target))
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, trust_env=True) as session:
                found = await self._validator(session, target.url, headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise SourceUnreachable(f"HEAD {target.url}: {type(e).__name__}: {e}") from e
        if found is None:
            raise NoChangeValidator(f"{target.url} has no ETag or Last-Modified header: "
                                    f"changes cannot be detected without downloading the image")
        return validator_digest(target.url, found)

    @staticmethod
    async def _validator(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str | None:
        async with session.head(url, headers=headers, allow_redirects=True) as response:
            if response.status < 400:
                return http_validator(response.headers)
            if response.status not in (405, 501):
                raise SourceUnreachable(f"HEAD {url}: HTTP {response.status} {response.reason}")
        ranged = {**headers, "Range": "bytes=0-0"}
        async with session.get(url, headers=ranged, allow_redirects=True) as response:
            if response.status >= 400:
                raise SourceUnreachable(f"GET {url}: HTTP {response.status} {response.reason}")
            return http_validator(response.headers)


class S3Poller:
    """HeadObject through aiobotocore, path-style, signed when the Secret gives keys."""

    async def poll(self, target: PollTarget) -> str:
        import botocore.exceptions  # type: ignore[import-untyped]
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
        from aiobotocore.session import get_session  # type: ignore[import-untyped]
        from botocore import UNSIGNED

        from importer.errors import ConfigurationError
        from importer.sources.s3 import parse_s3_url

        try:
            location = parse_s3_url(target.url)
        except ConfigurationError as e:
            raise UnsupportedSource(e.message) from e
        options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "connect_timeout": 20, "read_timeout": 60,
                                   "retries": {"mode": "standard", "total_max_attempts": 1}}
        credentials: dict[str, str] = {}
        if target.has_credentials:
            credentials = {"aws_access_key_id": target.access_key_id, "aws_secret_access_key": target.secret_key}
        else:
            options["signature_version"] = UNSIGNED
        with tempfile.TemporaryDirectory(prefix="cdi-poll-") as directory:
            verify: bool | str = not target.insecure
            if target.ca_certificates and not target.insecure:
                bundle = Path(directory) / "ca.pem"
                bundle.write_text("\n".join(target.ca_certificates))
                verify = str(bundle)
            try:
                async with get_session().create_client(
                        "s3", endpoint_url=location.endpoint_url, region_name=location.region, verify=verify,
                        config=AioConfig(**options), **credentials) as client:
                    head = await client.head_object(Bucket=location.bucket, Key=location.key)
            except botocore.exceptions.ClientError as e:
                code = (e.response.get("Error") or {}).get("Code") or "error"
                raise SourceUnreachable(f"HeadObject {location}: {code}") from e
            except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as e:
                raise SourceUnreachable(f"HeadObject {location}: {type(e).__name__}: {e}") from e
        return validator_digest(target.url, s3_validator(head))


def s3_validator(head: Mapping[str, Any]) -> str:
    version = str(head.get("VersionId") or "")
    if version and version != "null":
        return f"version:{version}"
    return f"etag:{head.get('ETag', '')};modified:{head.get('LastModified', '')};length:{head.get('ContentLength', '')}"


def default_pollers() -> dict[str, SourcePoller]:
    from cdi.controllers.dataimportcron.registry import RegistryPoller

    return {"registry": RegistryPoller(), "http": HttpPoller(), "s3": S3Poller()}
