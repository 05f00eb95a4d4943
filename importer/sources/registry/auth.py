"""Registry authentication: answers a `WWW-Authenticate` challenge with an `Authorization` header.

* `Basic`: the access-key/secret pair (upstream's `secretRef` keys `accessKeyId`/`secretKey`), used only
  when both are set, as upstream does.
* `Bearer realm=...,service=...,scope=...` (the distribution token flow): GET the realm with `service`
  and `scope` (the challenge's, else `repository:<name>:pull`), with the pair as Basic credentials if
  there is one and anonymously otherwise, and send back `Bearer <token>` (`token` or `access_token`).

`parse_challenges` is pure. `Authorizer` is driven by `importer.sources.registry.client`, which owns
the session and decides when a 401 deserves another attempt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from importer.errors import ImagePullFailed
from importer.sources.registry.blobs import read_limited

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))\s*,?")
_SCHEME = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)\s*,?")
MAX_TOKEN_RESPONSE = 1 << 20


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges: `Scheme k=v, k="quoted", Scheme2 ...` (parameter names lower-cased)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        param = _PARAM.match(header, pos)
        if param and challenges:
            value = param.group(2) if param.group(2) is not None else param.group(3)
            challenges[-1].params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = param.end()
            continue
        scheme = _SCHEME.match(header, pos)
        if not scheme:
            break
        challenges.append(Challenge(scheme.group(1).lower()))
        pos = scheme.end()
    return challenges


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return aiohttp.BasicAuth(self.username, self.password).encode()


class Authorizer:
    """Holds the current `Authorization` header for one repository."""

    def __init__(self, credentials: Credentials | None, repository: str, what: str) -> None:
        self._credentials = credentials
        self._default_scope = f"repository:{repository}:pull"
        self._what = what
        self.header: str | None = None

    async def answer(self, session: aiohttp.ClientSession, header: str, *, status: int,
                     required: bool = True) -> None:
        """Set `header` for the strongest challenge we can answer; a clear error if none (when `required`:
        the ping's challenge is answered only if we can, since some registries allow anonymous pulls)."""
        challenges = {c.scheme: c for c in parse_challenges(header)}
        if "bearer" in challenges:
            self.header = f"Bearer {await self._token(session, challenges['bearer'])}"
        elif "basic" in challenges and self._credentials is not None:
            self.header = self._credentials.basic()
        elif not required:
            return
        elif "basic" in challenges:
            raise ImagePullFailed(f"failed to pull image: {self._what}: the registry requires authentication "
                                  f"(HTTP {status}) and no credentials were given (set secretRef with keys "
                                  f"accessKeyId and secretKey)")
        else:
            raise ImagePullFailed(f"failed to pull image: {self._what}: the registry answered {status} with no "
                                  f"authentication challenge we support: {header!r}")

    async def _token(self, session: aiohttp.ClientSession, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise ImagePullFailed(f"failed to pull image: {self._what}: bearer challenge without a realm")
        query = {"scope": challenge.params.get("scope") or self._default_scope}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        url = URL(realm).update_query(query)
        try:
            async with session.get(url, headers=headers) as response:
                body = await read_limited(response, MAX_TOKEN_RESPONSE)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise ImagePullFailed(f"failed to pull image: {self._what}: getting a token from {realm}: "
                                  f"{type(e).__name__}: {e}") from e
        if status != 200:
            denied = " (wrong accessKeyId/secretKey?)" if status in (401, 403) else ""
            raise ImagePullFailed(f"failed to pull image: {self._what}: the token server {realm} answered "
                                  f"HTTP {status}{denied}")
        return _token_from(body, realm, self._what)


def _token_from(body: bytes, realm: str, what: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ImagePullFailed(f"failed to pull image: {what}: the token server {realm} sent no JSON: {e}") from e
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise ImagePullFailed(f"failed to pull image: {what}: the token server {realm} sent no token")
    return token
