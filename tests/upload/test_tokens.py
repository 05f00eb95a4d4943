"""Upload tokens (`cdi.tokens`): upstream's JWT shape, signature, issuer and time checks with leeway,
upload-purpose checks, and key rotation through the Secret representation. Pure: the clock is a number."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from cdi.tokens import (
    DEFAULT_LIFETIME,
    GroupVersionResource,
    InvalidToken,
    KeyRing,
    SigningKey,
    TokenPayload,
    TokenVerifier,
    WrongTokenPurpose,
    generate_signing_key,
    issue_token,
    upload_payload,
)

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def keys() -> list[SigningKey]:
    return [generate_signing_key(NOW + i) for i in range(3)]


def part(token: str, index: int) -> dict[str, object]:
    segment = token.split(".")[index]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def test_token_has_upstreams_shape(keys: list[SigningKey]) -> None:
    token = issue_token(keys[0], upload_payload("ns", "disk"), NOW)
    assert part(token, 0) == {"alg": "PS256", "kid": keys[0].kid, "typ": "JWT"}
    assert part(token, 1) == {
        "iss": "cdi-apiserver", "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW + DEFAULT_LIFETIME),
        "operation": "Upload", "name": "disk", "namespace": "ns",
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}}
    verifier = TokenVerifier([keys[0].public_key])
    assert verifier.verify_upload(token, NOW + 1) == TokenPayload("Upload", "disk", "ns")


@pytest.mark.parametrize(("offset", "valid"), [(-9, True), (-11, False), (DEFAULT_LIFETIME + 9, True),
                                               (DEFAULT_LIFETIME + 11, False)])
def test_times_are_checked_with_ten_seconds_leeway(offset: float, valid: bool, keys: list[SigningKey]) -> None:
    token = issue_token(keys[0], upload_payload("ns", "disk"), NOW)
    verifier = TokenVerifier([keys[0].public_key])
    if valid:
        verifier.verify_upload(token, NOW + offset)
    else:
        with pytest.raises(InvalidToken):
            verifier.verify_upload(token, NOW + offset)


def test_forged_tampered_and_unsigned_tokens_are_invalid(keys: list[SigningKey]) -> None:
    verifier = TokenVerifier([keys[0].public_key])
    forged = issue_token(keys[1], upload_payload("ns", "disk"), NOW)
    header, _claims, signature = issue_token(keys[0], upload_payload("ns", "disk"), NOW).split(".")
    other = base64.urlsafe_b64encode(json.dumps({**part(forged, 1), "name": "other"}).encode()).decode().rstrip("=")
    claims = part(forged, 1)
    hs256 = jwt.encode(claims, "s" * 32, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (forged, f"{header}.{other}.{signature}", hs256, unsigned, "not-a-jwt", ""):
        with pytest.raises(InvalidToken):
            verifier.verify(token, NOW)


def test_issuer_and_times_are_required(keys: list[SigningKey]) -> None:
    verifier = TokenVerifier([keys[0].public_key])
    base = {"iss": "cdi-apiserver", "iat": NOW, "nbf": NOW, "exp": NOW + 300, **upload_payload("ns", "d").claims()}
    for claims in ({**base, "iss": "someone-else"}, {k: v for k, v in base.items() if k != "exp"}):
        token = jwt.encode(claims, keys[0].private_key, algorithm="PS256", headers={"kid": keys[0].kid})
        with pytest.raises(InvalidToken):
            verifier.verify(token, NOW)


def test_upstream_tokens_without_key_id_are_tried_against_every_key(keys: list[SigningKey]) -> None:
    claims = {"iss": "cdi-apiserver", "iat": NOW, "nbf": NOW, "exp": NOW + 300, **upload_payload("ns", "d").claims()}
    token = jwt.encode(claims, keys[1].private_key, algorithm="PS256")
    assert TokenVerifier([keys[0].public_key, keys[1].public_key]).verify(token, NOW).name == "d"


@pytest.mark.parametrize("payload", [
    TokenPayload("Clone", "disk", "ns"),
    TokenPayload("Upload", "", "ns"),
    TokenPayload("Upload", "disk", ""),
    TokenPayload("Upload", "disk", "ns", GroupVersionResource("cdi.kubevirt.io", "v1beta1", "datavolumes")),
])
def test_tokens_for_other_purposes_are_refused(payload: TokenPayload, keys: list[SigningKey]) -> None:
    token = issue_token(keys[0], payload, NOW)
    with pytest.raises(WrongTokenPurpose):
        TokenVerifier([keys[0].public_key]).verify_upload(token, NOW)


def test_rotation_keeps_the_previous_key_and_survives_a_secret(keys: list[SigningKey]) -> None:
    ring = KeyRing(keys[0])
    assert not ring.due_for_rotation(NOW + 10, interval=3600) and ring.due_for_rotation(NOW + 3600, interval=3600)
    once = KeyRing.from_secret_data(ring.rotate(keys[1]).to_secret_data())
    assert once.current.kid == keys[1].kid and once.current.created == keys[1].created
    verifier = TokenVerifier.from_pem_bundle(once.public_bundle_pem())
    for key in keys[:2]:
        verifier.verify_upload(issue_token(key, upload_payload("ns", "disk"), NOW), NOW)
    twice = once.rotate(keys[2])
    verifier = TokenVerifier.from_pem_bundle(twice.public_bundle_pem())
    verifier.verify_upload(issue_token(keys[1], upload_payload("ns", "disk"), NOW), NOW)
    with pytest.raises(InvalidToken):
        verifier.verify_upload(issue_token(keys[0], upload_payload("ns", "disk"), NOW), NOW)
    with pytest.raises(ValueError, match="no RSA public key"):
        TokenVerifier.from_pem_bundle(b"")


def _inconsistent_pem(key: SigningKey) -> bytes:
    """`key` with one CRT value damaged: a private key OpenSSL's consistency check refuses."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = key.private_key.private_numbers()
    damaged = rsa.RSAPrivateNumbers(numbers.p, numbers.q, numbers.d, numbers.dmp1 ^ 2, numbers.dmq1, numbers.iqmp,
                                    numbers.public_numbers)
    return damaged.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_a_key_from_elsewhere_is_checked_and_only_a_trusted_one_is_not(keys: list[SigningKey]) -> None:
    pem = _inconsistent_pem(keys[0])
    with pytest.raises(ValueError):
        SigningKey.from_pem(pem, NOW)
    with pytest.raises(ValueError):
        KeyRing.from_secret_data({"signing.key": pem.decode(), "created": repr(NOW), "previous.pem": ""})
    assert SigningKey.from_pem(pem, NOW, trusted=True).public_key.public_numbers() == \
        keys[0].public_key.public_numbers()


def test_a_trusted_ring_signs_tokens_its_public_keys_verify(keys: list[SigningKey]) -> None:
    ring = KeyRing.from_secret_data(KeyRing(keys[0]).rotate(keys[1]).to_secret_data(), trusted=True)
    token = issue_token(ring.current, upload_payload("vms", "disk"), NOW)
    payload = TokenVerifier(list(ring.verification_keys)).verify_upload(token, NOW)
    assert (payload.name, payload.namespace) == ("disk", "vms")
    assert ring.current.public_key.public_numbers() == keys[1].public_key.public_numbers()
