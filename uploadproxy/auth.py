"""Who may upload where: the `Authorization: Bearer <token>` check of every proxied request.

Upstream's statuses, except where the issue is stricter: a missing or malformed header is 400; a
token that is forged (bad signature, unknown key), expired, not yet valid or from another issuer is
401. A validly signed token that is not an upload token for a PVC (wrong operation or resource,
empty name or namespace) is 401 here where upstream answers 400, and so is a token for another PVC
than the one the client names in the optional `X-Cdi-Upload-Target: <namespace>/<pvc>` header. The
PVC a token names is where the upload goes; nothing reaches an upload server before this check
passes. Used by `uploadproxy.app`.
"""

from __future__ import annotations

import re

from cdi.tokens import InvalidToken, TokenPayload, TokenVerifier, WrongTokenPurpose

_BEARER = re.compile(r"^Bearer\s+([A-Za-z0-9\-._~+/]+)$", re.IGNORECASE)  # upstream's pattern


class AuthFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bearer_token(header: str | None) -> str:
    if not header:
        raise AuthFailure(400, "missing Authorization header: send 'Authorization: Bearer <upload token>'")
    match = _BEARER.match(header.strip())
    if match is None:
        raise AuthFailure(400, "malformed Authorization header: expected 'Bearer <upload token>'")
    return match.group(1)


def authorize(verifier: TokenVerifier, header: str | None, now: float, intended: str | None = None) -> TokenPayload:
    """The verified upload token's claims, or `AuthFailure` with the status to answer."""
    token = bearer_token(header)
    try:
        payload = verifier.verify_upload(token, now)
    except (InvalidToken, WrongTokenPurpose) as e:
        raise AuthFailure(401, f"upload token rejected: {e.message}") from e
    if intended and intended.strip() != f"{payload.namespace}/{payload.name}":
        raise AuthFailure(401, f"upload token rejected: it was issued for PVC {payload.namespace}/{payload.name}, "
                               f"not {intended.strip()}")
    return payload
