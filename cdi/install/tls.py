"""The certificates a cluster install needs, and the Secrets and ConfigMaps that carry them.

Two authorities, as upstream keeps its signers apart:

* the **install CA** signs the serving certificates of `cdi-api` (webhooks and the aggregated upload
  API) and `cdi-uploadproxy`; its certificate is the `caBundle` of the APIService and every webhook
  (`cdi.install.webhooks`) and the bundle clients of the upload proxy trust;
* the **upload-server CA** is the one the controller signs each upload server's certificate with
  (`cdi.controllers.upload.credentials` reads it from `UPLOADSERVER_CA_SECRET`, key included, and
  creates one only when none exists); it also signs the proxy's client certificate, and the proxy
  trusts it for upload servers. Its key never reaches the proxy or the API server.

`credentials()` is pure apart from drawing keys (lifetimes per kind come from the operator's `certConfig`,
`Lifetimes`, any `timedelta`, defaulting to a static install's): it reuses what a previous run stored (`cdi
manifests --ca-dir`) while it is still good — signed by the CA, naming this namespace's Services, not issued
for longer than its lifetime now says, and not yet within its `renew_before` — and issues the rest, so
re-applying rotates nothing until it must. `next_renewal()` says when the earliest of them falls due (the
operator wakes itself then). `tls_objects()` renders the Secrets and ConfigMaps. The CLI
(`cdi.cli.installmanifests`) reads and writes the PEM files.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, fields

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from cdi.contracts import deployment as dep
from cdi.contracts import upload_protocol as up
from cdi.install.objects import Object, document, metadata
from cdi.pki import KeyPair, issue, made, new_ca

CA_LIFETIME = datetime.timedelta(days=3650)
# Nothing rotates a static install's certificates: re-run `cdi manifests --ca-dir` within a year.
LEAF_LIFETIME = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
# Certificate times are whole seconds: a certificate issued for exactly its lifetime may read a second longer.
_SLACK = datetime.timedelta(seconds=2)
CA_COMMON_NAME = "cdi-install-signer"
UPLOADSERVER_CA_COMMON_NAME = "cdi-uploadserver-signer"

# Upstream's names for the upload path's certificate stores. The CA Secret's name and layout are what
# `cdi.controllers.upload.credentials` reads (tests/install checks they agree).
UPLOADSERVER_CA_SECRET = dep.UPLOADSERVER_CA_SECRET  # tls.crt + tls.key, Opaque, as the controller creates it
UPLOADSERVER_CLIENT_SECRET = dep.UPLOADSERVER_CLIENT_SECRET
UPLOADSERVER_CA_BUNDLE = "cdi-uploadserver-signer-bundle"
BUNDLE_KEY = "ca-bundle.crt"


@dataclass(frozen=True)
class Credentials:
    ca: KeyPair
    apiserver: KeyPair
    uploadproxy: KeyPair
    uploadserver_ca: KeyPair
    uploadserver_client: KeyPair

    def pairs(self) -> dict[str, KeyPair]:
        """Each pair by its file stem in a `--ca-dir` (`ca`, `apiserver`, ... → ca.crt, ca.key)."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @property
    def ca_bundle(self) -> str:
        """The install CA as a `caBundle` field wants it (base64 of the PEM)."""
        return base64.b64encode(self.ca.cert_pem).decode()


def service_names(service: str, namespace: str) -> tuple[str, ...]:
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


def _dns_names(pair: KeyPair) -> set[str]:
    try:
        san = pair.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName))


def _issued_by(pair: KeyPair, ca: KeyPair) -> bool:
    try:
        pair.certificate.verify_directly_issued_by(ca.certificate)
    except (InvalidSignature, ValueError, TypeError):  # another issuer, or another key type
        return False
    return True


def _key_matches(pair: KeyPair) -> bool:
    """Whether the key is the certificate's; a key that does not parse raises ValueError (never replaced quietly)."""
    try:
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except TypeError as e:  # encrypted
        raise ValueError(f"the key of {pair.certificate.subject.rfc4514_string()} is encrypted") from e
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == pair.certificate.public_key().public_bytes(der, spki)


@dataclass(frozen=True)
class Lifetime:
    """How long a certificate is issued for, and how long before its end it is replaced (any durations: the
    operator's certConfig may ask for 1h30m renewed 30m before its end)."""

    duration: datetime.timedelta
    renew_before: datetime.timedelta = RENEW_BEFORE

    def renews_at(self, pair: KeyPair) -> datetime.datetime:
        return pair.expires() - self.renew_before


@dataclass(frozen=True)
class Lifetimes:
    """Per kind of certificate (the CDI resource's `certConfig`: ca, server, client); the defaults are a static
    install's."""

    ca: Lifetime = Lifetime(CA_LIFETIME)
    server: Lifetime = Lifetime(LEAF_LIFETIME)
    client: Lifetime = Lifetime(LEAF_LIFETIME)


def _good(pair: KeyPair | None, now: datetime.datetime, lifetime: Lifetime) -> bool:
    """Present, matching its key, already valid, not issued for longer than `lifetime` now says (the certConfig
    was shortened: upstream re-issues on such a change too) and not yet due: due at `renews_at` exactly."""
    return pair is not None and _key_matches(pair) and pair.certificate.not_valid_before_utc <= now \
        and pair.expires() - made(pair.cert_pem) <= lifetime.duration + _SLACK and now < lifetime.renews_at(pair)


def _leaf(stored: KeyPair | None, ca: KeyPair, common_name: str, now: datetime.datetime, *,
          names: tuple[str, ...] = (), client: bool = False,
          lifetime: Lifetime = Lifetime(LEAF_LIFETIME)) -> KeyPair:
    if stored is not None and _good(stored, now, lifetime) and _issued_by(stored, ca) \
            and set(names) <= _dns_names(stored):
        return stored
    return issue(ca, common_name, now, names=names, client=client, lifetime=lifetime.duration)


def _ca(stored: KeyPair | None, common_name: str, now: datetime.datetime, lifetime: Lifetime) -> KeyPair:
    if stored is not None and _good(stored, now, lifetime):
        return stored
    return new_ca(common_name, now, lifetime=lifetime.duration)


def credentials(namespace: str, now: datetime.datetime, stored: Mapping[str, KeyPair] | None = None,
                lifetimes: Lifetimes = Lifetimes()) -> Credentials:
    """The install's certificates: those in `stored` (by `Credentials.pairs()` stem) that are still good, new ones
    for the rest. A new CA means new certificates under it. `lifetimes`: the operator's `certConfig`."""
    stored = stored or {}
    ca = _ca(stored.get("ca"), CA_COMMON_NAME, now, lifetimes.ca)
    upload_ca = _ca(stored.get("uploadserver-ca"), UPLOADSERVER_CA_COMMON_NAME, now, lifetimes.ca)
    api_names = service_names(dep.APISERVER_SERVICE, namespace)
    proxy_names = service_names(dep.UPLOADPROXY_SERVICE, namespace)
    return Credentials(
        ca=ca,
        apiserver=_leaf(stored.get("apiserver"), ca, api_names[2], now, names=api_names, lifetime=lifetimes.server),
        uploadproxy=_leaf(stored.get("uploadproxy"), ca, proxy_names[2], now, names=proxy_names,
                          lifetime=lifetimes.server),
        uploadserver_ca=upload_ca,
        uploadserver_client=_leaf(stored.get("uploadserver-client"), upload_ca, up.UPLOAD_CLIENT_NAME, now,
                                  client=True, lifetime=lifetimes.client),
    )


def next_renewal(creds: Credentials, lifetimes: Lifetimes = Lifetimes()) -> datetime.datetime:
    """When the first of `creds` falls due under `lifetimes` (`credentials()` then issues it again)."""
    kinds = {"ca": lifetimes.ca, "uploadserver-ca": lifetimes.ca, "uploadserver-client": lifetimes.client}
    return min(kinds.get(stem, lifetimes.server).renews_at(pair) for stem, pair in creds.pairs().items())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _secret(name: str, namespace: str, component: str, data: dict[str, bytes], type_: str) -> Object:
    return document("v1", "Secret", metadata(name, namespace, component=component), type=type_,
                    data={key: _b64(value) for key, value in data.items()})


def _tls_secret(name: str, namespace: str, component: str, pair: KeyPair, ca: KeyPair) -> Object:
    return _secret(name, namespace, component, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem,
                                                "ca.crt": ca.cert_pem}, "kubernetes.io/tls")


def _bundle(name: str, namespace: str, component: str, ca: KeyPair) -> Object:
    return document("v1", "ConfigMap", metadata(name, namespace, component=component),
                    data={BUNDLE_KEY: ca.cert_pem.decode()})


def tls_objects(namespace: str, creds: Credentials) -> list[Object]:
    """Secrets and ConfigMaps holding the certificates, mounted by `cdi.install.workloads`."""
    return [
        _tls_secret(dep.APISERVER_SERVING_SECRET, namespace, dep.APISERVER, creds.apiserver, creds.ca),
        _bundle(dep.APISERVER_CA_BUNDLE, namespace, dep.APISERVER, creds.ca),
        _tls_secret(dep.UPLOADPROXY_SERVING_SECRET, namespace, dep.UPLOADPROXY, creds.uploadproxy, creds.ca),
        _tls_secret(UPLOADSERVER_CLIENT_SECRET, namespace, dep.UPLOADPROXY, creds.uploadserver_client,
                    creds.uploadserver_ca),
        _bundle(UPLOADSERVER_CA_BUNDLE, namespace, dep.UPLOADPROXY, creds.uploadserver_ca),
        _secret(UPLOADSERVER_CA_SECRET, namespace, dep.CONTROLLER,
                {"tls.crt": creds.uploadserver_ca.cert_pem, "tls.key": creds.uploadserver_ca.key_pem}, "Opaque"),
    ]
