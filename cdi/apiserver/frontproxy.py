"""Who is asking, and may they: authentication and authorization of cdi-apiserver's aggregated API.

As an aggregated API server we trust the kube-apiserver's front proxy (upstream's delegated
authentication, `pkg/apiserver/authorizer.go`): a request authenticates when its TLS client certificate
was issued by the request-header CA (`requestheader-client-ca-file` in ConfigMap
`kube-system/extension-apiserver-authentication`) to one of `requestheader-allowed-names` (any name when
the list is empty); the user is then whatever the proxy says in `X-Remote-User`, `X-Remote-Group` and
`X-Remote-Extra-<key>` (the header names come from the same ConfigMap). Anything else is 401.
Authorization is a SubjectAccessReview, created through the `Cluster` seam by the server
(`cdi.apiserver.server`): may this user `create uploadtokenrequests.upload.cdi.kubevirt.io` in the
namespace. A refusal is 403 worded as the API server words RBAC's.

Pure: the peer certificate and headers come in, a `UserInfo` or an `ApiError` comes out. Bearer tokens
and direct client certificates (TokenReview, `client-ca-file`) are not accepted: only the aggregator
calls this API.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from cdi.apiserver.discovery import GROUP, INFO, VERSION
from cdi.cluster.errors import Forbidden, Unauthorized
from cdi.cluster.protocol import Object

CONFIG_MAP: tuple[str, str] = ("kube-system", "extension-apiserver-authentication")


@dataclass(frozen=True)
class RequestHeaderAuth:
    """The front proxy we trust, from `extension-apiserver-authentication`."""

    ca_pem: str
    allowed_names: frozenset[str] = frozenset()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @property
    def authorities(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.ca_pem.encode())

    @classmethod
    def from_config_map(cls, data: Mapping[str, str]) -> RequestHeaderAuth | None:
        """None when the API server has no front proxy configured (no request-header CA)."""
        ca = data.get("requestheader-client-ca-file", "")
        if not ca.strip():
            return None
        defaults = cls(ca)
        return cls(ca, frozenset(_names(data, "requestheader-allowed-names")),
                   _names(data, "requestheader-username-headers") or defaults.username_headers,
                   _names(data, "requestheader-group-headers") or defaults.group_headers,
                   _names(data, "requestheader-extra-headers-prefix") or defaults.extra_prefixes)


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _names(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    try:
        value = json.loads(data.get(key) or "[]")
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def authenticate(peer_certificate: bytes | None, headers: Iterable[tuple[str, str]],
                 auth: RequestHeaderAuth | None, now: datetime) -> UserInfo:
    """The user the front proxy vouches for; `Unauthorized` when it is not the front proxy asking."""
    if auth is None or peer_certificate is None:
        raise Unauthorized("Unauthorized")
    try:
        cert = x509.load_der_x509_certificate(peer_certificate)
    except ValueError:
        raise Unauthorized("Unauthorized") from None
    if not any(_issued_by(cert, ca) for ca in auth.authorities):
        raise Unauthorized("Unauthorized")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Unauthorized("Unauthorized")
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if auth.allowed_names and not auth.allowed_names.intersection(names):
        raise Unauthorized("Unauthorized")
    pairs = [(name.lower(), value) for name, value in headers]
    user = next((v for h in auth.username_headers for n, v in pairs if n == h.lower() and v), "")
    if not user:
        raise Unauthorized("Unauthorized")
    groups = tuple(v for h in auth.group_headers for n, v in pairs if n == h.lower() and v)
    extra: dict[str, tuple[str, ...]] = {}
    for prefix in (p.lower() for p in auth.extra_prefixes):
        for name, value in pairs:
            if name.startswith(prefix) and len(name) > len(prefix):
                key = urllib.parse.unquote(name[len(prefix):])
                extra[key] = (*extra.get(key, ()), value)
    return UserInfo(user, groups, extra)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def access_review(user: UserInfo, namespace: str) -> Object:
    """May `user` create uploadtokenrequests in `namespace`? (upstream's authorizer asks exactly this)."""
    spec: Object = {"user": user.name, "groups": list(user.groups),
                    "resourceAttributes": {"namespace": namespace, "verb": "create", "group": GROUP,
                                           "version": VERSION, "resource": INFO.plural}}
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def check_access(answer: Object, user: UserInfo, namespace: str) -> None:
    """Raise the API server's 403 unless the SubjectAccessReview `answer` allows the request."""
    status = answer.get("status") or {}
    if status.get("allowed") is True and not status.get("denied"):
        return
    message = (f'{INFO.plural}.{GROUP} is forbidden: User "{user.name}" cannot create resource "{INFO.plural}" '
               f'in API group "{GROUP}" in the namespace "{namespace}"')
    reason = str(status.get("reason") or status.get("evaluationError") or "")
    raise Forbidden(f"{message}: {reason}" if reason else message)
