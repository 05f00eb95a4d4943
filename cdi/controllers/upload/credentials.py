"""The upload path's secrets, owned by the control plane and kept in Secrets in CDI's install namespace
(`cdi` unless installed elsewhere): the CA that signs upload-server and proxy certificates (mutual TLS
between them), and the rotating key ring that signs upload tokens. Also builds the per-upload-pod TLS
Secret. Called by `cdi serve` (proxy credentials and the key ring it hands the store for token answers)
and the upload controller (pod secrets)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts import deployment as dep
from cdi.controllers.meta import controller_reference, name_of, namespace_of
from cdi.pki import KeyPair, issue, needs_renewal, new_ca
from cdi.tokens import KeyRing, generate_signing_key

CDI_NAMESPACE = dep.NAMESPACE
CA_SECRET = dep.UPLOADSERVER_CA_SECRET
TOKEN_KEYS_SECRET = dep.UPLOAD_TOKEN_KEYS_SECRET
CA_COMMON_NAME = "cdi-uploadserver-signer"
LEAF_DAYS = 30
RENEW_BEFORE = timedelta(days=7)


def encode(data: dict[str, str | bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}


def decode(secret: Object) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _secret(name: str, namespace: str, data: dict[str, str | bytes], **meta: Any) -> Object:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {ann.LABEL_APP: ann.APP_NAME}, **meta},
            "data": encode(data)}


async def _get_or_create(cluster: Cluster, secret: Object) -> Object:
    try:
        return await cluster.create(secret)
    except AlreadyExists:
        return await cluster.get("v1", "Secret", name_of(secret), namespace_of(secret))


async def ensure_ca(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE) -> KeyPair:
    try:
        data = decode(await cluster.get("v1", "Secret", CA_SECRET, namespace))
    except NotFound:
        pair = new_ca(CA_COMMON_NAME, now)
        data = decode(await _get_or_create(cluster, _secret(CA_SECRET, namespace, {
            "tls.crt": pair.cert_pem, "tls.key": pair.key_pem})))
    return KeyPair(data["tls.crt"], data["tls.key"])


async def ensure_key_ring(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE) -> KeyRing:
    """The token key ring, created on first use and rotated when due (the previous key still verifies)."""
    epoch = now.timestamp()
    try:
        secret = await cluster.get("v1", "Secret", TOKEN_KEYS_SECRET, namespace)
    except NotFound:
        ring = KeyRing(generate_signing_key(epoch))
        secret = await _get_or_create(cluster, _secret(TOKEN_KEYS_SECRET, namespace,
                                                       dict(ring.to_secret_data())))
    ring = KeyRing.from_secret_data(decode(secret))
    if ring.due_for_rotation(epoch):
        ring = ring.rotate(generate_signing_key(epoch))
        await cluster.update({**secret, "data": encode(dict(ring.to_secret_data()))})
    return ring


def server_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names an upload server's certificate carries: its Service's DNS names."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


def upload_server_secret(pvc: Object, name: str, service: str, ca: KeyPair, now: datetime) -> Object:
    """The upload pod's TLS Secret: its server certificate and the CA it trusts for client certificates."""
    # The commonName is the Service's name (a DNS label, at most 63 characters): "<svc>.<ns>.svc" can pass
    # the 64 a commonName may hold. Clients check the DNS names, which carry every form.
    pair = issue(ca, service, now, names=server_names(service, namespace_of(pvc)), days=LEAF_DAYS)
    return _secret(name, namespace_of(pvc), {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.cert_pem},
                   ownerReferences=[controller_reference(pvc)])


def leaf_due(pair: KeyPair | None, now: datetime) -> bool:
    return pair is None or needs_renewal(pair, now, before=RENEW_BEFORE)
