"""The token signing key of a cluster install: Secret `cdi-api-signing-key`, as upstream keeps it.

Upstream's cdi-apiserver (`pkg/keys/keystore.go`) creates the Secret on first start — an RSA-2048 key,
`id_rsa` the private key (PKCS#1 PEM) and `id_rsa.pub` the public key (PKIX PEM) — and loads it on
every later start; the upload proxy verifies tokens with `id_rsa.pub` (env `APISERVER_PUBLIC_KEY`,
`cdi.install.workloads`). `ensure_signing_key` does the same through the `Cluster` seam; when two
replicas race to create it, the loser loads the winner's. Unlike the upload token key ring
(`cdi-upload-token-keys`, rotated by `cdi.controllers.upload.rotator`) it is not rotated, as upstream's is
not: it also signs the clone tokens `cdi controller` extends into 10-year tokens and checks with this one
key, so a new key would have to keep the old one verifying for ten years; and cdi-apiserver and cdi
controller read it once, at start.
"""

from __future__ import annotations

import base64
from typing import Final

from cryptography.hazmat.primitives import serialization

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.deployment import SIGNING_KEY_SECRET
from cdi.tokens import SigningKey, generate_signing_key, public_pem

PRIVATE_KEY: Final = "id_rsa"
PUBLIC_KEY: Final = "id_rsa.pub"


def signing_key_secret(key: SigningKey, namespace: str) -> Object:
    private = key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
    data = {PRIVATE_KEY: private, PUBLIC_KEY: public_pem(key.public_key)}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SIGNING_KEY_SECRET, "namespace": namespace,
                         "labels": {ann.LABEL_APP: ann.APP_NAME}},
            "data": {name: base64.b64encode(value).decode() for name, value in data.items()}}


def signing_key_from_secret(secret: Object) -> SigningKey:
    """The key in the Secret; `ValueError` when `id_rsa` is missing or not an RSA private key."""
    encoded = (secret.get("data") or {}).get(PRIVATE_KEY)
    if not encoded:
        raise ValueError(f"Secret {SIGNING_KEY_SECRET} has no {PRIVATE_KEY}")
    return SigningKey.from_pem(base64.b64decode(encoded), created=0.0)


async def ensure_signing_key(cluster: Cluster, namespace: str, now: float) -> SigningKey:
    """The install's signing key, created (RSA-2048) when the Secret does not exist yet."""
    try:
        return signing_key_from_secret(await cluster.get("v1", "Secret", SIGNING_KEY_SECRET, namespace))
    except NotFound:
        pass
    try:
        return signing_key_from_secret(await cluster.create(signing_key_secret(generate_signing_key(now), namespace)))
    except AlreadyExists:
        return signing_key_from_secret(await cluster.get("v1", "Secret", SIGNING_KEY_SECRET, namespace))
