"""`PrefetchedTokens`: the first upload token is asked for at once and handed out if still good; an
expiring or failed first token is asked for again; later calls always ask; an unused prefetch is
cancelled on close."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from cdi.cli.errors import CliError
from cdi.cli.uploadtokens import RENEW_BEFORE, PrefetchedTokens, token_expiry
from cdi.cluster.errors import ServerError

NOW = 1_000_000.0


def jwt(exp: float, tag: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp, "tag": tag}).encode()).decode().rstrip("=")
    return f"header.{claims}.signature"


class Issuer:
    """Hands out tokens valid for `lifetime` seconds from NOW, counting requests; fails on request."""

    def __init__(self, lifetime: float, failures: int = 0) -> None:
        self.lifetime, self.failures, self.asked = lifetime, failures, 0

    async def __call__(self) -> str:
        self.asked += 1
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise ServerError("no upload token key yet")
        return jwt(NOW + self.lifetime, f"t{self.asked}")


def tag(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["tag"])


async def test_the_first_token_is_asked_for_before_anyone_needs_it_and_then_handed_out() -> None:
    issuer = Issuer(300)
    tokens = PrefetchedTokens(issuer, clock=lambda: NOW)
    await asyncio.sleep(0.01)  # the command waits for the upload server meanwhile
    assert issuer.asked == 1
    assert tag(await tokens()) == "t1"
    assert issuer.asked == 1
    assert tag(await tokens()) == "t2"  # renewals always ask
    await tokens.close()


async def test_a_first_token_that_expires_soon_is_asked_for_again() -> None:
    issuer = Issuer(RENEW_BEFORE - 1)
    tokens = PrefetchedTokens(issuer, clock=lambda: NOW)
    assert tag(await tokens()) == "t2"
    assert token_expiry(jwt(NOW + 5, "x")) == NOW + 5


async def test_a_failed_prefetch_is_asked_for_again_and_that_answer_counts() -> None:
    tokens = PrefetchedTokens(Issuer(300, failures=1), clock=lambda: NOW)
    assert tag(await tokens()) == "t2"
    failing = PrefetchedTokens(Issuer(300, failures=2), clock=lambda: NOW)
    with pytest.raises(ServerError, match="no upload token key yet"):
        await failing()


async def test_close_cancels_a_prefetch_nobody_used() -> None:
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(60)
        return jwt(NOW + 300, "late")

    tokens = PrefetchedTokens(slow, clock=lambda: NOW)
    await started.wait()
    await asyncio.wait_for(tokens.close(), 1)


def test_a_malformed_token_is_a_cli_error() -> None:
    with pytest.raises(CliError, match="malformed"):
        token_expiry("not-a-jwt")
