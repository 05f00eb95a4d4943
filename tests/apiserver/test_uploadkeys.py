"""cdi-apiserver signs upload tokens with the rotating token key ring's current key (`RingSigningKey`):
`cdi-api-signing-key` until the controller has made the ring, then the ring's key, following rotations
within its refresh time; a token issued before a rotation still verifies with the keys the proxies get."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdi.apiserver.frontproxy import RequestHeaderAuth
from cdi.apiserver.server import ApiServer, serving_context, start
from cdi.apiserver.uploadkeys import RingSigningKey
from cdi.controllers.upload.credentials import (
    TOKEN_KEYS_SECRET,
    RingSecret,
    decode,
    encode,
    ensure_ring_secret,
    read_key_ring,
)
from cdi.embedded import EmbeddedCluster
from cdi.embedded.reviews import DEFAULT_REVIEWS
from cdi.tokens import InvalidToken, KeyRing, TokenVerifier, generate_signing_key, load_public_keys
from tests.apiserver.test_server import AS_ALICE, PROXY_NAME, TOKENS, Served, token_request
from tests.support.tls import TestPKI, make_client_cert, make_pki

NAMESPACE = "cdi"


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def rotate(cluster: EmbeddedCluster, created: float) -> RingSecret:
    """What the rotation controller's promotion leaves: a new current key (generated, and staged, at
    `created`), the old one retired."""
    secret = await cluster.get("v1", "Secret", TOKEN_KEYS_SECRET, NAMESPACE)
    old = RingSecret.from_data(decode(secret))
    rotated = RingSecret(old.ring.rotate(generate_signing_key(created)), None, (time.time(),))
    secret["data"] = encode(rotated.data())
    await cluster.update(secret)
    return rotated


def reader(cluster: EmbeddedCluster) -> Callable[[], Awaitable[KeyRing | None]]:
    async def read() -> KeyRing | None:
        found = await read_key_ring(cluster, NAMESPACE)
        return found[1].ring if found is not None else None
    return read


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "store.db", reviews=dict(DEFAULT_REVIEWS)) as store:
        yield store


async def test_the_signing_key_follows_the_ring_within_its_refresh(cluster: EmbeddedCluster) -> None:
    fallback, ticks, wall = generate_signing_key(time.time()), Ticks(), Ticks()
    wall.now = time.time()
    keys = RingSigningKey(reader(cluster), fallback, refresh=10.0, propagation=180.0, monotonic=ticks, clock=wall)
    assert (await keys.current()).kid == fallback.kid  # no ring yet: upstream's key
    ring = await ensure_ring_secret(cluster, datetime.now(UTC), NAMESPACE)
    assert (await keys.current()).kid == fallback.kid  # read less than `refresh` ago
    ticks.now = 10.0
    assert (await keys.current()).kid == fallback.kid  # the ring's first key: the proxies may not have it yet
    ticks.now, wall.now = 20.0, wall.now + 181.0
    assert (await keys.current()).kid == ring.ring.current.kid
    rotated = await rotate(cluster, created=wall.now - 180.0)  # promoted after being staged that long
    ticks.now = 30.0
    assert (await keys.current()).kid == rotated.ring.current.kid


async def test_tokens_from_before_a_rotation_still_verify_and_new_ones_use_the_new_key(
        cluster: EmbeddedCluster, tmp_path: Path, pki: TestPKI) -> None:
    front = make_pki(tmp_path / "front-proxy")
    fallback = generate_signing_key(time.time())
    await ensure_ring_secret(cluster, datetime.now(UTC), NAMESPACE)
    auth = RequestHeaderAuth(front.ca_pem().decode(), frozenset({PROXY_NAME}))
    keys = RingSigningKey(reader(cluster), fallback, refresh=0.0, propagation=0.0)
    runner, port = await start(ApiServer(cluster, fallback, auth, upload_key=keys.current), "127.0.0.1", 0,
                               serving_context(pki.server_cert, pki.server_key, auth))
    try:
        served = Served(f"https://127.0.0.1:{port}", fallback, cluster, make_client_cert(front, PROXY_NAME),
                        make_client_cert(front, "someone-else"), pki)
        status, before = await served.call("POST", TOKENS, token_request(), client=served.front_proxy,
                                           headers=AS_ALICE)
        assert status == 200, before
        rotated = await rotate(cluster, created=time.time())
        status, after = await served.call("POST", TOKENS, token_request(), client=served.front_proxy,
                                          headers=AS_ALICE)
        assert status == 200, after
    finally:
        await runner.cleanup()
    proxies_accept = TokenVerifier(list(load_public_keys(rotated.verification_pem())))
    for answer in (before, after):  # both verify with what the proxies are given after the rotation
        assert proxies_accept.verify_upload(answer["status"]["token"], time.time()).name == "disk"
    newest = TokenVerifier([rotated.ring.current.public_key])
    newest.verify_upload(after["status"]["token"], time.time())  # signed with the new key
    with pytest.raises(InvalidToken):
        newest.verify_upload(before["status"]["token"], time.time())
    with pytest.raises(InvalidToken):
        TokenVerifier([fallback.public_key]).verify_upload(after["status"]["token"], time.time())
