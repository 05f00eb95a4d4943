"""Upload tokens: PS256-signed JWTs with upstream's claims, and the rotating RSA key ring that signs them.

A token (upstream `pkg/token`) is a compact JWS, header `{"alg":"PS256","typ":"JWT","kid":<key id>}`,
with the registered claims `iss` ("cdi-apiserver"), `iat`, `nbf`, `exp` and upstream's private claims:

    {"operation": "Upload", "name": "<pvc>", "namespace": "<ns>",
     "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}}

Lifetime is upstream's 5 minutes (`DEFAULT_LIFETIME`) and times are checked with upstream's 10 s
leeway; a token is checked once, when a request starts, so a long upload outlives its token and the
CLI fetches a fresh one for each new request (a resumed chunk). Unlike go-jose we require `exp`, `nbf`
and `iat` to be present.

Rotation: the control plane owns a `KeyRing` (stored in a Secret via `to_secret_data`): the current
signing key and the public keys of the previous ones (`RETAINED_PREVIOUS`). Verifiers accept every
public key in the ring (`public_bundle_pem`), so tokens signed just before a rotation stay valid for
their lifetime; a rotation interval longer than lifetime + leeway makes one previous key enough. The
`kid` is derived from the public key itself (a SHA-256 thumbprint of its DER form), so a bundle of
PEM public keys is all a verifier needs; tokens without a `kid` (upstream's) are tried against all keys.

Imports nothing of the control plane: the apiserver side and `uploadproxy` both use it. Times are
passed in (`now`, seconds since the epoch) so callers inject their clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER: Final = "cdi-apiserver"
ALGORITHM: Final = "PS256"
DEFAULT_LIFETIME: Final = 300.0
LEEWAY: Final = 10.0
KEY_BITS: Final = 2048
RETAINED_PREVIOUS: Final = 1
DEFAULT_ROTATION_INTERVAL: Final = 24 * 3600.0
OPERATION_UPLOAD: Final = "Upload"
OPERATION_CLONE: Final = "Clone"


class TokenRejected(Exception):
    """A token the proxy must refuse; `message` is safe to show the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidToken(TokenRejected):
    """Not signed by a key we trust, malformed, from another issuer, expired or not yet valid."""


class WrongTokenPurpose(TokenRejected):
    """Validly signed, but not an upload token for a PVC (operation, resource or names wrong)."""


@dataclass(frozen=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


PVC_RESOURCE: Final = GroupVersionResource("", "v1", "persistentvolumeclaims")


@dataclass(frozen=True)
class TokenPayload:
    operation: str
    name: str
    namespace: str
    resource: GroupVersionResource = PVC_RESOURCE
    params: Mapping[str, str] = field(default_factory=dict)

    def claims(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"operation": self.operation, "name": self.name, "namespace": self.namespace,
                               "resource": {"group": self.resource.group, "version": self.resource.version,
                                            "resource": self.resource.resource}}
        if self.params:
            doc["params"] = dict(self.params)
        return doc

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> TokenPayload:
        resource = claims.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        params = claims.get("params")
        return cls(operation=str(claims.get("operation") or ""), name=str(claims.get("name") or ""),
                   namespace=str(claims.get("namespace") or ""),
                   resource=GroupVersionResource(*(str(resource.get(k) or "") for k in ("group", "version",
                                                                                          "resource"))),
                   params={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {})


def upload_payload(namespace: str, pvc: str) -> TokenPayload:
    return TokenPayload(OPERATION_UPLOAD, pvc, namespace)


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


def public_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(bundle: bytes) -> list[rsa.RSAPublicKey]:
    """Every RSA public key in a PEM bundle (concatenated `PUBLIC KEY` blocks)."""
    end = b"-----END PUBLIC KEY-----"
    keys: list[rsa.RSAPublicKey] = []
    for block in bundle.split(end)[:-1]:
        key = serialization.load_pem_public_key(block.strip() + b"\n" + end + b"\n")
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("token verification keys must be RSA public keys")
        keys.append(key)
    return keys


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    created: float

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        return key_id(self.public_key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    @classmethod
    def from_pem(cls, pem: bytes, created: float) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the token signing key must be an RSA private key")
        return cls(key, created)


def generate_signing_key(now: float, bits: int = KEY_BITS) -> SigningKey:
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=bits), now)


@dataclass(frozen=True)
class KeyRing:
    current: SigningKey
    previous: tuple[rsa.RSAPublicKey, ...] = ()

    def rotate(self, new_key: SigningKey, retain: int = RETAINED_PREVIOUS) -> KeyRing:
        """`new_key` signs from now on; the old current key and `retain - 1` older ones still verify."""
        return KeyRing(new_key, (self.current.public_key, *self.previous)[:retain])

    def due_for_rotation(self, now: float, interval: float = DEFAULT_ROTATION_INTERVAL) -> bool:
        return now - self.current.created >= interval

    @property
    def verification_keys(self) -> tuple[rsa.RSAPublicKey, ...]:
        return (self.current.public_key, *self.previous)

    def public_bundle_pem(self) -> bytes:
        """What the proxy is given (a file it reloads, or APISERVER_PUBLIC_KEY): every key it must accept."""
        return b"".join(public_pem(key) for key in self.verification_keys)

    def to_secret_data(self) -> dict[str, str]:
        return {"signing.key": self.current.private_pem().decode(), "created": repr(self.current.created),
                "previous.pem": b"".join(public_pem(key) for key in self.previous).decode()}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str | bytes]) -> KeyRing:
        def raw(name: str) -> bytes:
            value = data.get(name) or b""
            return value.encode() if isinstance(value, str) else value

        current = SigningKey.from_pem(raw("signing.key"), float(raw("created") or b"0"))
        return cls(current, tuple(load_public_keys(raw("previous.pem"))))


def issue_token(key: SigningKey, payload: TokenPayload, now: float, lifetime: float = DEFAULT_LIFETIME) -> str:
    issued = int(now)
    claims = {"iss": ISSUER, "iat": issued, "nbf": issued, "exp": int(now + lifetime), **payload.claims()}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


class TokenVerifier:
    """Checks signature, issuer and times; `verify_upload` also checks the token is for uploading to a PVC."""

    def __init__(self, keys: Iterable[rsa.RSAPublicKey], leeway: float = LEEWAY) -> None:
        self._keys = {key_id(key): key for key in keys}
        self._leeway = leeway

    @classmethod
    def from_pem_bundle(cls, bundle: bytes, leeway: float = LEEWAY) -> TokenVerifier:
        keys = load_public_keys(bundle)
        if not keys:
            raise ValueError("no RSA public key in the token verification key bundle")
        return cls(keys, leeway)

    def verify(self, token: str, now: float) -> TokenPayload:
        claims = self._claims(token)
        if claims.get("iss") != ISSUER:
            raise InvalidToken(f"token issuer is not {ISSUER}")
        exp, nbf, iat = (claims.get(name) for name in ("exp", "nbf", "iat"))
        if not (isinstance(exp, int | float) and isinstance(nbf, int | float) and isinstance(iat, int | float)):
            raise InvalidToken("token lacks exp, nbf or iat")
        if now - self._leeway > exp:
            raise InvalidToken("token is expired")
        if now + self._leeway < max(nbf, iat):
            raise InvalidToken("token is not valid yet")
        return TokenPayload.from_claims(claims)

    def verify_upload(self, token: str, now: float) -> TokenPayload:
        payload = self.verify(token, now)
        if payload.operation != OPERATION_UPLOAD:
            raise WrongTokenPurpose(f"invalid operation {payload.operation!r}: not an upload token")
        if payload.resource != PVC_RESOURCE or not payload.name or not payload.namespace:
            raise WrongTokenPurpose("invalid token: it does not name a PersistentVolumeClaim")
        return payload

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as e:
            raise InvalidToken(f"malformed token: {e}") from e
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"token is not signed with {ALGORITHM}")
        kid = header.get("kid")
        candidates = [self._keys[kid]] if kid in self._keys else [] if kid else list(self._keys.values())
        options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_iss": False,
                   "verify_aud": False}
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], options=options)  # type: ignore[arg-type]
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as e:
                raise InvalidToken(f"malformed token: {e}") from e
        raise InvalidToken("token signature is invalid")
