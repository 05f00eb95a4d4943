"""Upload tokens for `cdi image-upload`: when one is due for renewal (`token_expiry`, `RENEW_BEFORE`),
and `PrefetchedTokens`, which asks for the first token as soon as the target exists, so that the
signing (an RSA key loaded and used in the store's review, or a round trip to cdi-apiserver) happens
while the command waits for the upload server instead of after it. `cdi.cli.uploadclient` asks it for
a token before its first request and again whenever the one it holds is about to expire.

Nothing here imports the HTTP client: `cdi.cli.imageupload` uses it before aiohttp is loaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

from cdi.cli.errors import CliError
from cdi.cluster.errors import ApiError

RENEW_BEFORE = 60.0  # seconds before a token's expiry when a fresh one is asked for


def token_expiry(token: str) -> float:
    """`exp` of a JWT, read without verifying it (only to know when to ask for a new one)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError) as e:
        raise CliError(f"the upload token is malformed: {e}") from e


class PrefetchedTokens:
    """A token source whose first token is requested at construction, in the background.

    The first call returns that token if it is still good for more than `RENEW_BEFORE` seconds (the wait
    for the upload server may have been long); otherwise, or if asking for it failed, it asks again, and
    that request's error is the one raised. Later calls always ask for a fresh token. Must be built
    inside a running event loop; `close` drops a prefetch nobody used.
    """

    def __init__(self, fetch: Callable[[], Awaitable[str]], clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._clock = clock
        self._first: asyncio.Task[str] | None = asyncio.ensure_future(fetch())

    async def __call__(self) -> str:
        first, self._first = self._first, None
        if first is not None:
            with contextlib.suppress(CliError, ApiError):
                token = await first
                if token_expiry(token) - self._clock() > RENEW_BEFORE:
                    return token
        return await self._fetch()

    async def close(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, CliError, ApiError):
                await first
