"""Translating the API server's failures into `cdi.cluster.errors`, in one place.

A failed request carries a `Status` object (`code`, `reason`, `message`, `details.causes`); a watch
carries one in an ERROR event. Both become the error class for the code and reason, with the server's
message and each cause, and `Retry-After` for 429. Transport failures (connection refused, reset,
TLS) become a retryable `ServerError` with code 503, as if the server were unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cdi.cluster.errors import ApiError, ServerError, error_for_status


def from_status(status: Mapping[str, Any], http_code: int | None = None,
                retry_after: str | None = None) -> ApiError:
    """The error a Status object (from a response body or a watch ERROR event) stands for."""
    code = int(status.get("code") or http_code or 500)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or reason or f"HTTP {code}")
    causes = [f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
              for c in (status.get("details") or {}).get("causes") or [] if isinstance(c, Mapping)]
    return error_for_status(code, reason, message, causes=causes or None, retry_after=_seconds(retry_after))


def from_response(code: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The error for a non-2xx response: its Status body if it has one, else the raw text."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return from_status(doc, code, retry_after)
    text = body.decode("utf-8", errors="replace").strip() or f"HTTP {code}"
    return error_for_status(code, "", text[:2000], retry_after=_seconds(retry_after))


def unreachable(server: str, error: BaseException) -> ApiError:
    return ServerError(f"cannot reach the API server at {server}: {error}", code=503, reason="ServiceUnavailable")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
