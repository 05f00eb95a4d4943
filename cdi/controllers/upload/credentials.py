"""The upload path's secrets, owned by the control plane and kept in Secrets in CDI's install namespace
(`cdi` unless installed elsewhere): the CA that signs upload-server certificates and the proxy's client
certificate (mutual TLS between them), the CA of the embedded proxy's serving certificate, and the key ring
that signs upload tokens. Also builds the per-upload-pod TLS Secret. Called by `cdi serve` (proxy
credentials and the key ring it hands the store for token answers), the upload controller (pod secrets) and
the rotation controller (`cdi.controllers.upload.rotator`, which renews all of them; `rotation` says when).

The upload-server CA Secret holds the signing CA (`tls.crt`/`tls.key`), a staged next CA
(`pending.crt`/`pending.key`) and the previous one (`previous.crt`/`previous.key`) during a rotation, and
`ca-bundle.crt`, every CA peers must trust. The key ring Secret holds `KeyRing.to_secret_data()` plus a
staged key (`pending.key`, `pending.created`) and when each previous key stopped signing (`retired`)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts import deployment as dep
from cdi.controllers.meta import controller_reference, name_of, namespace_of
from cdi.controllers.upload.rotation import CaCerts, CertPolicies, CertPolicy, policies_from
from cdi.pki import KeyPair, issue, join_bundle, needs_renewal, new_ca, split_bundle
from cdi.tokens import KeyRing, SigningKey, generate_signing_key, public_pem

CDI_NAMESPACE = dep.NAMESPACE
CA_SECRET = dep.UPLOADSERVER_CA_SECRET
TOKEN_KEYS_SECRET = dep.UPLOAD_TOKEN_KEYS_SECRET
CA_COMMON_NAME = "cdi-uploadserver-signer"
# The embedded proxy's serving CA (upstream's cdi-uploadproxy-signer). Clients pin it through CDIConfig's
# status.uploadProxyCA, which `cdi serve` publishes once at start, so it is long-lived and not rotated; the
# serving certificate under it is.
PROXY_CA_SECRET: Final = "cdi-uploadproxy-signer"
PROXY_CA_COMMON_NAME: Final = "cdi-uploadproxy-signer"
CLIENT_SECRET: Final = dep.UPLOADSERVER_CLIENT_SECRET
BUNDLE_KEY: Final = "ca-bundle.crt"
BUNDLE_CONFIG_MAP: Final = "cdi-uploadserver-signer-bundle"  # a cluster proxy's mounted trust (cdi.install.tls)
PENDING_KEY: Final = "pending.key"
PENDING_CREATED: Final = "pending.created"
RETIRED: Final = "retired"
LEAF_DAYS = 30
RENEW_BEFORE = timedelta(days=7)


def encode(data: Mapping[str, str | bytes]) -> dict[str, str]:
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


def operator_managed(obj: Object) -> bool:
    """Rendered and re-applied by `cdi operator` (controlled by the CDI resource): its certConfig rotates it."""
    return any(ref.get("kind") == "CDI" for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


@dataclass(frozen=True)
class CaKeys:
    """The upload-server CA Secret, parsed."""

    signer: KeyPair
    pending: KeyPair | None = None
    previous: KeyPair | None = None

    @property
    def certs(self) -> CaCerts:
        return CaCerts(self.signer.cert_pem, self.pending.cert_pem if self.pending else None,
                       self.previous.cert_pem if self.previous else None)

    def bundle(self) -> bytes:
        return join_bundle(list(self.certs.bundle()))

    def data(self) -> dict[str, str | bytes]:
        data: dict[str, str | bytes] = {"tls.crt": self.signer.cert_pem, "tls.key": self.signer.key_pem,
                                        BUNDLE_KEY: self.bundle()}
        for name, pair in (("pending", self.pending), ("previous", self.previous)):
            if pair is not None:
                data |= {f"{name}.crt": pair.cert_pem, f"{name}.key": pair.key_pem}
        return data

    @classmethod
    def from_data(cls, data: dict[str, bytes]) -> CaKeys:
        def pair(name: str) -> KeyPair | None:
            cert, key = data.get(f"{name}.crt"), data.get(f"{name}.key")
            return KeyPair(cert, key) if cert and key else None

        return cls(KeyPair(data["tls.crt"], data["tls.key"]), pair("pending"), pair("previous"))


def ca_secret(keys: CaKeys, namespace: str) -> Object:
    return _secret(CA_SECRET, namespace, keys.data())


async def read_ca(cluster: Cluster, namespace: str = CDI_NAMESPACE) -> tuple[Object, CaKeys] | None:
    try:
        secret = await cluster.get("v1", "Secret", CA_SECRET, namespace)
    except NotFound:
        return None
    return secret, CaKeys.from_data(decode(secret))


async def ensure_ca_keys(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE,
                         policy: CertPolicy | None = None) -> CaKeys:
    """The upload-server CA Secret, created when missing (for `policy`'s duration; ten years without one)."""
    if (found := await read_ca(cluster, namespace)) is not None:
        return found[1]
    pair = new_ca(CA_COMMON_NAME, now, lifetime=policy.duration if policy else None)
    return CaKeys.from_data(decode(await _get_or_create(cluster, ca_secret(CaKeys(pair), namespace))))


async def ensure_ca(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE) -> KeyPair:
    """The CA that signs upload-server certificates now (during a rotation, not yet the staged one)."""
    return (await ensure_ca_keys(cluster, now, namespace)).signer


async def ensure_proxy_ca(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE, *,
                          adopt: KeyPair | None = None) -> KeyPair:
    """The embedded proxy's serving CA, made on first use — or `adopt`ed: a control plane from before this CA
    existed signed the proxy with the upload-server CA, which clients of an upload in flight still pin."""
    try:
        data = decode(await cluster.get("v1", "Secret", PROXY_CA_SECRET, namespace))
    except NotFound:
        pair = adopt or new_ca(PROXY_CA_COMMON_NAME, now)
        data = decode(await _get_or_create(cluster, _secret(PROXY_CA_SECRET, namespace, dict(_pair_data(pair)))))
    return KeyPair(data["tls.crt"], data["tls.key"])


def _pair_data(pair: KeyPair) -> dict[str, str | bytes]:
    return {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}


async def cert_policies(cluster: Cluster) -> CertPolicies:
    """The CDI resource's certConfig (the oldest CDI, the one upstream treats as active); upstream's defaults
    when there is none or the kind is not served. Entries that cannot be read keep their default."""
    if not await cluster.served(CDI_API_VERSION, "CDI"):
        return CertPolicies()
    cdis = sorted((await cluster.list(CDI_API_VERSION, "CDI")).items,
                  key=lambda o: (str(o["metadata"].get("creationTimestamp") or ""), name_of(o)))
    return policies_from((cdis[0].get("spec") or {}).get("certConfig") if cdis else None)[0]


def client_secret(pair: KeyPair, bundle: bytes, namespace: str) -> Object:
    return _secret(CLIENT_SECRET, namespace, {**_pair_data(pair), "ca.crt": bundle})


# --- token keys -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RingSecret:
    """The key ring Secret, parsed: the ring, a staged key, and when each previous key stopped signing."""

    ring: KeyRing
    pending: SigningKey | None = None
    retired: tuple[float, ...] = ()

    def verification_pem(self) -> bytes:
        """Every public key verifiers must accept: the ring's and the staged one (about to sign)."""
        staged = public_pem(self.pending.public_key) if self.pending else b""
        return staged + self.ring.public_bundle_pem()

    def data(self) -> dict[str, str | bytes]:
        data: dict[str, str | bytes] = {**self.ring.to_secret_data(), RETIRED: json.dumps(list(self.retired))}
        if self.pending is not None:
            data |= {PENDING_KEY: self.pending.private_pem(), PENDING_CREATED: repr(self.pending.created)}
        return data

    @classmethod
    def from_data(cls, data: dict[str, bytes]) -> RingSecret:
        ring = KeyRing.from_secret_data(data)
        pending = SigningKey.from_pem(data[PENDING_KEY], float(data[PENDING_CREATED])) \
            if data.get(PENDING_KEY) and data.get(PENDING_CREATED) else None
        # A ring written before retirement times were kept: its previous keys retired when the current began.
        retired = tuple(float(t) for t in json.loads(data[RETIRED])) if data.get(RETIRED) \
            else (ring.current.created,) * len(ring.previous)
        return cls(ring, pending, retired[:len(ring.previous)])


async def read_key_ring(cluster: Cluster, namespace: str = CDI_NAMESPACE) -> tuple[Object, RingSecret] | None:
    try:
        secret = await cluster.get("v1", "Secret", TOKEN_KEYS_SECRET, namespace)
    except NotFound:
        return None
    return secret, RingSecret.from_data(decode(secret))


async def ensure_ring_secret(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE, *,
                             key: SigningKey | None = None) -> RingSecret:
    """The token key ring, created on first use (with `key` if given, made ahead). Rotation is the rotation
    controller's (`rotator`)."""
    if (found := await read_key_ring(cluster, namespace)) is not None:
        return found[1]
    # Making an RSA key takes 50-150 ms of CPU: in a thread, not on the event loop all controllers share.
    if key is None:
        key = await asyncio.to_thread(generate_signing_key, now.timestamp())
    ring = RingSecret(KeyRing(key))
    stored = await _get_or_create(cluster, _secret(TOKEN_KEYS_SECRET, namespace, ring.data()))
    return RingSecret.from_data(decode(stored))


async def ensure_key_ring(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE) -> KeyRing:
    """The ring that signs upload tokens (created on first use)."""
    return (await ensure_ring_secret(cluster, now, namespace)).ring


def ring_secret(ring: RingSecret, namespace: str) -> Object:
    return _secret(TOKEN_KEYS_SECRET, namespace, ring.data())


def server_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names an upload server's certificate carries: its Service's DNS names."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


@dataclass(frozen=True)
class UploadIssuer:
    """What an upload server's certificate is made with: the signing CA, the bundle the server trusts for
    client certificates, and the server certificates' lifetime."""

    ca: KeyPair
    trust: bytes
    policy: CertPolicy


async def upload_issuer(cluster: Cluster, now: datetime, namespace: str = CDI_NAMESPACE) -> UploadIssuer:
    policies = await cert_policies(cluster)
    keys = await ensure_ca_keys(cluster, now, namespace, policies.ca)
    return UploadIssuer(keys.signer, keys.bundle(), policies.server)


def server_pair(issuer: KeyPair, service: str, namespace: str, now: datetime, policy: CertPolicy) -> KeyPair:
    # The commonName is the Service's name (a DNS label, at most 63 characters): "<svc>.<ns>.svc" can pass
    # the 64 a commonName may hold. Clients check the DNS names, which carry every form.
    return issue(issuer, service, now, names=server_names(service, namespace), lifetime=policy.duration)


def upload_server_secret(pvc: Object, name: str, service: str, issuer: UploadIssuer, now: datetime) -> Object:
    """The upload pod's TLS Secret: its server certificate and the CAs it trusts for client certificates."""
    pair = server_pair(issuer.ca, service, namespace_of(pvc), now, issuer.policy)
    return _secret(name, namespace_of(pvc), {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": issuer.trust},
                   ownerReferences=[controller_reference(pvc)])


def bundle_certs(bundle: bytes) -> tuple[bytes, ...]:
    return tuple(split_bundle(bundle))


def leaf_due(pair: KeyPair | None, now: datetime) -> bool:
    return pair is None or needs_renewal(pair, now, before=RENEW_BEFORE)
