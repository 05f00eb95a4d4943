"""Upload and clone tokens: PS256-signed JWTs with upstream's claims, and the RSA key ring that signs them.

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

Clone tokens (upstream `pkg/token`, `pkg/apiserver/webhooks`) authorize a cross-namespace clone: the
DataVolume's admission (`cdi.admission.clonesource`) asks the API server whether the user may clone from
the source namespace and, if so, annotates the DataVolume with a short-lived token (issuer
"cdi-apiserver", 5 minutes, operation "Clone", name/namespace of the source, resource
`persistentvolumeclaims` or `snapshot.storage.k8s.io/v1 volumesnapshots`, params `targetNamespace` and
`targetName`); the controller checks it and mints the extended token (issuer "cdi-deployment", 10 years,
plus param `uid` of the object it is put on). `CloneTokens` does all three with one key ring. Same-namespace
clones need no token.

Errors (every message is safe to show the client, and says what is wrong):

    TokenRejected
    ├── InvalidToken         not signed by a key we trust, malformed, another issuer, not valid yet
    │   └── TokenExpired     past `exp` and the leeway
    └── WrongTokenPurpose    validly signed, but for another operation, object or clone

Imports nothing of the control plane: the apiserver side and `uploadproxy` both use it. Times are
passed in (`now`, seconds since the epoch) so callers inject their clock.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER: Final = "cdi-apiserver"
EXTENDED_ISSUER: Final = "cdi-deployment"  # the controller's long-lived clone tokens (upstream's issuer)
EXTENDED_LIFETIME: Final = 10 * 365 * 24 * 3600.0  # upstream: 10 years
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


class TokenExpired(InvalidToken):
    """Validly signed, but past its `exp` (and the leeway)."""


class WrongTokenPurpose(TokenRejected):
    """Validly signed, but not for this operation (operation, resource, names or uid wrong)."""


@dataclass(frozen=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


PVC_RESOURCE: Final = GroupVersionResource("", "v1", "persistentvolumeclaims")
SNAPSHOT_RESOURCE: Final = GroupVersionResource("snapshot.storage.k8s.io", "v1", "volumesnapshots")


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
    def from_pem(cls, pem: bytes, created: float, *, trusted: bool = False) -> SigningKey:
        """The key in `pem`. Unless `trusted`, OpenSSL first checks that the RSA key is consistent (its primes,
        exponents and CRT values): about 70 ms of CPU for a 2048-bit key. `trusted` skips that check, for a key
        this control plane generated and keeps where only it can write (`cdi.embedded.uploadtokens.KeyRingFile`),
        which `cdi image-upload` loads afresh in every run; a key that came from elsewhere (a Secret an
        administrator may have made, cdi-apiserver's) is always checked. A damaged trusted key signs tokens the
        proxy cannot verify: the upload is refused, nothing is let through.

        A key that passed the check is remembered by its PEM (`_CHECKED`): the ring is read again every few
        seconds by long-running processes, and the check holds the interpreter lock, so every read stalled
        their event loop. The same bytes are the same key; new bytes are checked."""
        key = _CHECKED.get(pem)
        if key is None:
            loaded = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=trusted)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("the token signing key must be an RSA private key")
            key = loaded
            if not trusted:
                _remember(pem, key)
        return cls(key, created)


_CHECKED: dict[bytes, rsa.RSAPrivateKey] = {}  # PEM -> the key OpenSSL checked, oldest first
_CHECKED_MAX = 16
_CHECKED_LOCK = threading.Lock()


def generate_signing_key(now: float, bits: int = KEY_BITS) -> SigningKey:
    """A new key (50-150 ms of CPU: callers on an event loop run it in a thread, which OpenSSL lets run
    beside the loop). It is sound by construction, so its PEM is remembered as checked."""
    key = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=bits), now)
    _remember(key.private_pem(), key.private_key)
    return key


def _remember(pem: bytes, key: rsa.RSAPrivateKey) -> None:
    with _CHECKED_LOCK:  # keys are made in threads
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[pem] = key


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
    def from_secret_data(cls, data: Mapping[str, str | bytes], *, trusted: bool = False) -> KeyRing:
        """The ring `to_secret_data` wrote; `trusted` as for `SigningKey.from_pem`."""
        def raw(name: str) -> bytes:
            value = data.get(name) or b""
            return value.encode() if isinstance(value, str) else value

        current = SigningKey.from_pem(raw("signing.key"), float(raw("created") or b"0"), trusted=trusted)
        return cls(current, tuple(load_public_keys(raw("previous.pem"))))


def issue_token(key: SigningKey, payload: TokenPayload, now: float, lifetime: float = DEFAULT_LIFETIME, *,
                issuer: str = ISSUER) -> str:
    issued = int(now)
    claims = {"iss": issuer, "iat": issued, "nbf": issued, "exp": int(now + lifetime), **payload.claims()}
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
        return self.verify_issued(token, now)[1]

    def verify_issued(self, token: str, now: float, issuers: Collection[str] = (ISSUER,)) -> tuple[str, TokenPayload]:
        """The issuer (one of `issuers`) and the payload of a token that is valid at `now`."""
        claims = self._claims(token)
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in issuers:
            raise InvalidToken(f"token issuer is not {' or '.join(issuers)}")
        exp, nbf, iat = (claims.get(name) for name in ("exp", "nbf", "iat"))
        if not (isinstance(exp, int | float) and isinstance(nbf, int | float) and isinstance(iat, int | float)):
            raise InvalidToken("token lacks exp, nbf or iat")
        if now - self._leeway > exp:
            raise TokenExpired("token is expired")
        if now + self._leeway < max(nbf, iat):
            raise InvalidToken("token is not valid yet")
        return issuer, TokenPayload.from_claims(claims)

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


# --- Clone tokens -------------------------------------------------------------------------------------

CloneSourceKind = Literal["pvc", "snapshot"]
CLONE_RESOURCES: Final[Mapping[str, GroupVersionResource]] = {"pvc": PVC_RESOURCE, "snapshot": SNAPSHOT_RESOURCE}
PARAM_TARGET_NAMESPACE: Final = "targetNamespace"
PARAM_TARGET_NAME: Final = "targetName"
PARAM_UID: Final = "uid"


@dataclass(frozen=True)
class CloneGrant:
    """What a clone token authorizes: cloning one source (PVC or VolumeSnapshot) into one target."""

    source_kind: CloneSourceKind
    source_namespace: str
    source_name: str
    target_namespace: str
    target_name: str

    def payload(self, uid: str | None = None) -> TokenPayload:
        params = {PARAM_TARGET_NAMESPACE: self.target_namespace, PARAM_TARGET_NAME: self.target_name}
        if uid is not None:
            params[PARAM_UID] = uid
        return TokenPayload(OPERATION_CLONE, self.source_name, self.source_namespace,
                            CLONE_RESOURCES[self.source_kind], params)

    def describe(self) -> str:
        return _describe_clone(CLONE_RESOURCES[self.source_kind], self.source_namespace, self.source_name,
                               self.target_namespace, self.target_name)


def _describe_clone(resource: GroupVersionResource, namespace: str, name: str, target_namespace: str,
                    target_name: str) -> str:
    return f"{resource.resource} {namespace}/{name} into {target_namespace}/{target_name}"


_RECREATE = "delete the DataVolume and create it again to be authorized anew"


class CloneTokens:
    """Issues and checks clone tokens with the key ring `keys()` returns (called on every use, so a rotated
    ring is followed; it may raise when there is no key yet, as `cdi.embedded.uploadtokens.KeyRingFile.read`
    does). Tokens from any key of the ring are accepted; new ones are signed with its current key.

    `issue` is admission's short-lived token; `verify` checks either kind of token for one clone (`uid`: the
    UID of the object the token is on — a token that names a uid must name this one); `extend` checks a
    token and mints the extended one for the object with `uid`. Refusals are `TokenRejected` (`InvalidToken`
    for a bad signature, issuer or time, `WrongTokenPurpose` for another clone) whose message says what is
    wrong and what to do.
    """

    def __init__(self, keys: Callable[[], KeyRing], *, lifetime: float = DEFAULT_LIFETIME,
                 extended_lifetime: float = EXTENDED_LIFETIME, leeway: float = LEEWAY) -> None:
        self._keys, self._lifetime, self._extended_lifetime, self._leeway = keys, lifetime, extended_lifetime, leeway
        self._verifier: tuple[tuple[rsa.RSAPublicKey, ...], TokenVerifier] | None = None

    @classmethod
    def from_key(cls, key: SigningKey, **options: float) -> CloneTokens:
        """Tokens signed and checked with one key (a cluster's `cdi-api-signing-key`, never rotated)."""
        ring = KeyRing(key)
        return cls(lambda: ring, **options)

    def issue(self, *, source_kind: CloneSourceKind, source_namespace: str, source_name: str,
              target_namespace: str, target_name: str, now: float) -> str:
        """The short-lived token admission puts on a cross-namespace clone DataVolume."""
        grant = CloneGrant(source_kind, source_namespace, source_name, target_namespace, target_name)
        return issue_token(self._keys().current, grant.payload(), now, self._lifetime)

    def verify(self, token: str, *, source_kind: CloneSourceKind, source_namespace: str, source_name: str,
               target_namespace: str, target_name: str, uid: str | None, now: float) -> None:
        """Return if `token` (short-lived or extended) authorizes this clone at `now`; raise `TokenRejected`."""
        grant = CloneGrant(source_kind, source_namespace, source_name, target_namespace, target_name)
        self._checked(token, grant, uid, now)

    def extend(self, token: str, *, source_kind: CloneSourceKind, source_namespace: str, source_name: str,
               target_namespace: str, target_name: str, uid: str, now: float, token_uid: str | None = None) -> str:
        """The extended token (issuer cdi-deployment, 10 years) for the object with `uid`, after checking `token`
        for the same clone. `token_uid` is the uid `token` was extended for, if it was (a DataVolume's extended
        token re-minted for its claim); a short-lived token names none."""
        grant = CloneGrant(source_kind, source_namespace, source_name, target_namespace, target_name)
        self._checked(token, grant, token_uid, now)
        return issue_token(self._keys().current, grant.payload(uid), now, self._extended_lifetime,
                           issuer=EXTENDED_ISSUER)

    def _checked(self, token: str, grant: CloneGrant, uid: str | None, now: float) -> TokenPayload:
        try:
            issuer, payload = self._verifier_now().verify_issued(token, now, (ISSUER, EXTENDED_ISSUER))
        except TokenExpired:
            raise TokenExpired(f"the clone token for {grant.describe()} has expired: {_RECREATE}") from None
        except InvalidToken as e:
            raise InvalidToken(f"the clone token for {grant.describe()} is not valid ({e.message}): "
                               f"{_RECREATE}") from None
        if payload.operation != OPERATION_CLONE:
            raise WrongTokenPurpose(f"the token is not a clone token (operation {payload.operation!r})")
        expected = grant.payload(payload.params.get(PARAM_UID))
        if (payload.name, payload.namespace, payload.resource, _targets(payload)) != (
                expected.name, expected.namespace, expected.resource, _targets(expected)):
            granted = _describe_clone(payload.resource, payload.namespace, payload.name,
                                      *_targets(payload))
            raise WrongTokenPurpose(f"the clone token authorizes cloning {granted}, not {grant.describe()}")
        token_uid = payload.params.get(PARAM_UID)
        if issuer == EXTENDED_ISSUER and token_uid is None:
            raise WrongTokenPurpose("the extended clone token names no object uid")
        if token_uid is not None and token_uid != uid:
            raise WrongTokenPurpose(f"the clone token for {grant.describe()} was issued for the object with uid "
                                    f"{token_uid}, not {uid or 'this one'}: it cannot be copied to another object")
        return payload

    def _verifier_now(self) -> TokenVerifier:
        keys = self._keys().verification_keys
        if self._verifier is None or self._verifier[0] != keys:
            self._verifier = (keys, TokenVerifier(keys, self._leeway))
        return self._verifier[1]


def _targets(payload: TokenPayload) -> tuple[str, str]:
    return payload.params.get(PARAM_TARGET_NAMESPACE, ""), payload.params.get(PARAM_TARGET_NAME, "")
