"""Google credentials for the GCS source (`importer.sources.gcs`): the JSON key file that
GOOGLE_APPLICATION_CREDENTIALS names (upstream mounts the DataVolume's `secretRef` at /google and
points the variable at /google/credentials.json), turned into an OAuth2 access token.

Two kinds of file are understood, the ones `gcloud` and the IAM console hand out:
- `service_account`: a JWT (RS256, signed with the key's private key, scope
  devstorage.read_only) exchanged at the key's `token_uri` with the jwt-bearer grant;
- `authorized_user`: a refresh token exchanged at its `token_uri` (default Google's).
The exchange goes to whatever `token_uri` the file names, which is also how tests point it at a
local token endpoint. Without the variable the source reads anonymously, as upstream does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from importer.errors import ConfigurationError, SourceUnavailable

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600


@dataclass(frozen=True)
class ServiceAccountKey:
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str

    def assertion(self, now: float) -> str:
        issued = int(now)
        claims = {"iss": self.client_email, "scope": READ_ONLY_SCOPE, "aud": self.token_uri,
                  "iat": issued, "exp": issued + ASSERTION_LIFETIME}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        try:
            return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as e:
            raise ConfigurationError(f"the service account key of {self.client_email} cannot sign: {e}") from e

    def token_form(self, now: float) -> dict[str, str]:
        return {"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion(now)}

    def __str__(self) -> str:
        return f"service account {self.client_email}"


@dataclass(frozen=True)
class AuthorizedUser:
    client_id: str
    client_secret: str
    refresh_token: str
    token_uri: str

    def token_form(self, now: float) -> dict[str, str]:
        return {"grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self.client_secret,
                "refresh_token": self.refresh_token}

    def __str__(self) -> str:
        return f"user credentials of client {self.client_id}"


GoogleCredentials = ServiceAccountKey | AuthorizedUser


def _required(data: Mapping[str, Any], fields: tuple[str, ...], path: Path) -> dict[str, str]:
    missing = [f for f in fields if not isinstance(data.get(f), str) or not data[f]]
    if missing:
        raise ConfigurationError(f"Google credentials {path}: missing {', '.join(missing)}")
    return {f: str(data[f]) for f in fields}


def parse_credentials(data: Mapping[str, Any], path: Path) -> GoogleCredentials:
    kind = data.get("type")
    token_uri = str(data.get("token_uri") or DEFAULT_TOKEN_URI)
    if kind == "service_account":
        found = _required(data, ("client_email", "private_key"), path)
        return ServiceAccountKey(found["client_email"], found["private_key"], str(data.get("private_key_id") or ""),
                                 token_uri)
    if kind == "authorized_user":
        found = _required(data, ("client_id", "client_secret", "refresh_token"), path)
        return AuthorizedUser(found["client_id"], found["client_secret"], found["refresh_token"], token_uri)
    raise ConfigurationError(f"Google credentials {path}: unsupported type {kind!r} "
                             f"(expected service_account or authorized_user)")


def load_credentials(path: Path) -> GoogleCredentials:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ConfigurationError(f"cannot read Google credentials {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise ConfigurationError(f"Google credentials {path} are not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigurationError(f"Google credentials {path} are not a JSON object")
    return parse_credentials(data, path)


async def fetch_access_token(session: aiohttp.ClientSession, credentials: GoogleCredentials, now: float) -> str:
    """One token exchange; a refused or unreachable token endpoint is retryable (the Secret may be fixed)."""
    form = credentials.token_form(now)
    prefix = f"Unable to connect to gcs data source: could not get an access token for {credentials} " \
             f"from {credentials.token_uri}"
    try:
        async with session.post(credentials.token_uri, data=form, headers={"Accept": "application/json"}) as reply:
            body = await reply.content.read(64 * 1024)
            if reply.status != 200:
                raise SourceUnavailable(f"{prefix}: {reply.status} {reply.reason}: "
                                        f"{body.decode(errors='replace').strip()[:300]}")
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise SourceUnavailable(f"{prefix}: {type(e).__name__}: {e}") from e
    try:
        token = json.loads(body).get("access_token")
    except (ValueError, AttributeError) as e:
        raise SourceUnavailable(f"{prefix}: the answer is not a token: {body[:200]!r}") from e
    if not isinstance(token, str) or not token:
        raise SourceUnavailable(f"{prefix}: the answer has no access_token")
    return token
