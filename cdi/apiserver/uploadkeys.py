"""Which key cdi-apiserver signs upload tokens with: the current key of the rotating token key ring.

The rotation controller (`cdi.controllers.upload.rotator`, in `cdi controller`) keeps the ring in Secret
`cdi-upload-token-keys` of the install's namespace: it stages a new key, publishes it to the upload
proxies (which verify with every key of the ring, `cdi.cli.proxyhost.install_token_keys`), promotes it
once they have had time to see it, and keeps the retired key verifying for longer than a token lives.
`RingSigningKey` follows it: it re-reads the Secret (through the reader `cdi apiserver` hands it) at
most every `refresh` seconds and hands out the ring's current key once that key is at least
`propagation` seconds old (a promoted key was staged that long before; the ring's very first key was
not, and the proxies may not have read it yet), so tokens issued before a rotation stay valid until
they expire and new ones are signed with the new key. Until then — a fresh install whose ring is
younger than that or not made yet, or a ring that cannot be read — tokens are signed with
`cdi-api-signing-key` as upstream signs them, which the proxies also accept.
The embedded store signs with the same ring (`cdi.embedded.uploadtokens`), so both modes rotate alike.
Clone tokens keep `cdi-api-signing-key` (`cdi.apiserver.signingkey` says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from cdi.cluster.errors import ApiError
from cdi.tokens import KeyRing, SigningKey

log = logging.getLogger(__name__)
REFRESH_SECONDS = 10.0
PROPAGATION_SECONDS = 180.0  # the rotation controller's default (`cdi.controllers.upload.rotation.Schedule`)

ReadRing = Callable[[], Awaitable[KeyRing | None]]


class RingSigningKey:
    """`read_ring` reads the ring Secret (None when there is none); the CLI wires it to the controllers'
    reader, so that this module needs nothing above the cluster seam."""

    def __init__(self, read_ring: ReadRing, fallback: SigningKey, *, refresh: float = REFRESH_SECONDS,
                 propagation: float = PROPAGATION_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], float] = time.time) -> None:
        self._read_ring, self._fallback = read_ring, fallback
        self._refresh, self._propagation, self._monotonic, self._clock = refresh, propagation, monotonic, clock
        self._key: SigningKey | None = None
        self._read_at: float | None = None

    async def current(self) -> SigningKey:
        now = self._monotonic()
        if self._read_at is None or now - self._read_at >= self._refresh:
            self._key = await self._read()
            self._read_at = now
        return self._key or self._fallback

    async def _read(self) -> SigningKey | None:
        try:
            ring = await self._read_ring()
        except (ApiError, ValueError) as e:
            log.warning("cannot read the upload token key ring (%s): signing with cdi-api-signing-key", e)
            return self._key  # keep the last good one
        if ring is None:
            return None
        key = ring.current
        if self._clock() - key.created < self._propagation:
            return self._key  # not published long enough for every proxy to accept it yet
        if self._key is None or key.kid != self._key.kid:
            log.info("upload tokens are signed with key %s of the rotating key ring", key.kid)
        return key
