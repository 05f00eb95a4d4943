"""The embedded store's answer to an UploadTokenRequest: a signed upload token in the create response.

A real cluster answers `create` of an UploadTokenRequest from cdi-apiserver's aggregated API; the embedded
store answers it itself, with the same pure handler (`cdi.apiserver.tokenrequest`), through the
`reviews` mapping of `EmbeddedCluster` (`upload_token_reviews`). Nothing is stored.

The signing key is the control plane's token key ring: a Secret in the store (`cdi-upload-token-keys`,
created by `cdi.controllers.upload.credentials.ensure_key_ring`, rotated by `cdi.controllers.upload.rotator`),
whose public keys the upload proxy trusts. A review is answered synchronously inside `create`, where the
store cannot be read, so `cdi serve` keeps a copy of the ring in a file next to the store (`KeyRingFile`;
`cdi.cli.tokenkeys` writes it at start and whenever the ring may have rotated), and every process that
opens the store — `cdi serve` itself and the CLI's `open_cluster` — signs with what that file holds.
Before any `cdi serve` has run there is no key, and the answer is 503 saying so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cdi.api.meta import UPLOAD_GROUP
from cdi.cluster.errors import ServerError
from cdi.cluster.protocol import Object
from cdi.embedded.reviews import DEFAULT_REVIEWS, Review

if TYPE_CHECKING:
    from cdi.tokens import KeyRing

# Signing (PyJWT, RSA) is imported on first use: every CLI command opens the store, few ask for a token.


class KeyRingFile:
    """The token key ring as a JSON file (`KeyRing.to_secret_data`), written atomically, read when changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[tuple[int, int], KeyRing] | None = None

    def write(self, ring: KeyRing) -> None:
        data = json.dumps(ring.to_secret_data(), sort_keys=True).encode()
        if self.path.exists() and self.path.read_bytes() == data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.replace(self.path)

    def read(self) -> KeyRing:
        """The ring as last written; `ServerError` 503 when no control plane has written one yet."""
        try:
            stat = self.path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            if self._cached is None or self._cached[0] != version:
                from cdi.tokens import KeyRing
                # Written by `cdi serve` alone (mode 0600, next to the store): its key's consistency check
                # is skipped (`SigningKey.from_pem`), ~70 ms of every `cdi image-upload`'s CPU.
                self._cached = (version, KeyRing.from_secret_data(json.loads(self.path.read_bytes()), trusted=True))
        except FileNotFoundError:
            raise ServerError("the upload token signing key does not exist yet: `cdi serve` creates it when it "
                              "starts", code=503, reason="ServiceUnavailable") from None
        except (OSError, ValueError, KeyError) as e:
            raise ServerError(f"the upload token signing key in {self.path} cannot be read: {e}", code=503,
                              reason="ServiceUnavailable") from e
        return self._cached[1]


class UploadTokenReview:
    """A `Review` for UploadTokenRequest: signs with the current key of `keys()` at `clock()` (epoch seconds),
    for `lifetime` seconds (default: `cdi.tokens.DEFAULT_LIFETIME`)."""

    def __init__(self, keys: Callable[[], KeyRing], clock: Callable[[], float] = time.time,
                 lifetime: float | None = None) -> None:
        self._keys, self._clock, self._lifetime = keys, clock, lifetime

    def __call__(self, request: Object) -> Object:
        from cdi.apiserver.tokenrequest import answer_token_request

        namespace = str((request.get("metadata") or {}).get("namespace") or "")
        key, now = self._keys().current, self._clock()
        if self._lifetime is None:
            return answer_token_request(request, namespace, key, now)
        return answer_token_request(request, namespace, key, now, self._lifetime)


def upload_token_reviews(keys: Callable[[], KeyRing], clock: Callable[[], float] = time.time
                         ) -> Mapping[tuple[str, str], Review]:
    """The default reviews plus UploadTokenRequest, for `EmbeddedCluster(reviews=...)`."""
    return {**DEFAULT_REVIEWS, (UPLOAD_GROUP, "UploadTokenRequest"): UploadTokenReview(keys, clock)}
