"""Clone tokens in embedded mode: the signing key in a file next to the store, and the store's mutation.

Embedded mode has one administrator, who may clone from any namespace, so the store's mutating admission
(`clone_token_mutation`, handed to `EmbeddedCluster(mutation=...)` by `cdi serve` and the CLI's
`open_cluster`) allows every cross-namespace clone; it still adds the clone token
(`cdi.admission.clonetoken`), so the clone controllers check the same token on both backends.

The key is its own, not the upload token ring (which rotates daily and keeps a retired key only for an
upload token's lifetime), and it is not rotated: an extended clone token lives 10 years, as upstream's,
whose `cdi-api-signing-key` never rotates either, so a rotated key would have to keep verifying for ten
years — a ring that only grows, for no gain in safety while the old keys still verify. It is an
RSA-2048 key in a PKCS#8 PEM file (`SigningKeyFile`, mode 0600), created by the first process that needs
it — `cdi serve` at start, or a CLI command creating a clone DataVolume before any `cdi serve` ran — and
never replaced: a second process racing to create it loads the winner's (the file is linked into place,
which fails if it exists). Signing is imported only when a DataVolume is created.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cdi.admission import AdmissionRequest, Lookup, Mutate
from cdi.api.meta import CDI_GROUP
from cdi.cluster.errors import ServerError
from cdi.cluster.protocol import Object

if TYPE_CHECKING:
    from cdi.tokens import CloneTokens, KeyRing


class SigningKeyFile:
    """The clone token signing key at `path`, created on first use; `ring()` is it as a one-key `KeyRing`."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path, self._clock = path, clock
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()

    def ring(self) -> KeyRing:
        with self._lock:
            if self._ring is None:
                self._ring = self._load_or_create()
            return self._ring

    def _load_or_create(self) -> KeyRing:
        from cdi.tokens import KeyRing, SigningKey, generate_signing_key

        try:
            if not self.path.exists():
                self._create(generate_signing_key(self._clock()).private_pem())
            return KeyRing(SigningKey.from_pem(self.path.read_bytes(), created=self.path.stat().st_mtime))
        except (OSError, ValueError) as e:
            raise ServerError(f"the clone token signing key {self.path} cannot be read or created: {e}", code=503,
                              reason="ServiceUnavailable") from e

    def _create(self, pem: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(tmp, self.path)  # fails if another process made it first: theirs is the key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def clone_tokens(self) -> CloneTokens:
        from cdi.tokens import CloneTokens

        return CloneTokens(self.ring)


class _CloneTokenMutation:
    """`cdi.admission.clonetoken.CloneTokenMutation`, built on the first DataVolume created."""

    def __init__(self, key: SigningKeyFile, clock: Callable[[], float]) -> None:
        self._key, self._clock = key, clock
        self._mutation: Mutate | None = None

    def __call__(self, request: AdmissionRequest, lookup: Lookup) -> Object | None:
        if (request.kind.group, request.kind.kind, request.operation) != (CDI_GROUP, "DataVolume", "CREATE"):
            return None
        if self._mutation is None:
            from cdi.admission.clonetoken import CloneTokenMutation

            self._mutation = CloneTokenMutation(self._key.clone_tokens(), clock=self._clock)
        return self._mutation(request, lookup)


def clone_token_mutation(key: SigningKeyFile, clock: Callable[[], float] = time.time) -> Mutate:
    """The store's mutating admission: a cross-namespace clone DataVolume gets a clone token signed with `key`."""
    return _CloneTokenMutation(key, clock)
