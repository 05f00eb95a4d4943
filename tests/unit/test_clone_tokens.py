"""Clone tokens (`cdi.tokens.CloneTokens`): upstream's claims for the short-lived and the extended token, the
checks the controller relies on (signature, issuer, time, operation, source, target, uid) and what a refusal
says. Pure: the clock is a number."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cdi.tokens import (
    DEFAULT_LIFETIME,
    EXTENDED_LIFETIME,
    CloneTokens,
    InvalidToken,
    KeyRing,
    SigningKey,
    TokenExpired,
    TokenRejected,
    TokenVerifier,
    WrongTokenPurpose,
    generate_signing_key,
    issue_token,
    upload_payload,
)

NOW = 1_800_000_000.0
CLONE: dict[str, Any] = {"source_kind": "pvc", "source_namespace": "golden", "source_name": "fedora",
                         "target_namespace": "vms", "target_name": "disk"}


@pytest.fixture(scope="module")
def keys() -> list[SigningKey]:
    return [generate_signing_key(NOW + i) for i in range(2)]


@pytest.fixture
def tokens(keys: list[SigningKey]) -> CloneTokens:
    return CloneTokens.from_key(keys[0])


def claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def test_the_short_token_has_upstreams_claims(tokens: CloneTokens) -> None:
    assert claims(tokens.issue(**CLONE, now=NOW)) == {
        "iss": "cdi-apiserver", "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW + DEFAULT_LIFETIME),
        "operation": "Clone", "name": "fedora", "namespace": "golden",
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
        "params": {"targetNamespace": "vms", "targetName": "disk"}}


def test_a_snapshot_source_names_the_volumesnapshots_resource(tokens: CloneTokens) -> None:
    token = tokens.issue(**{**CLONE, "source_kind": "snapshot"}, now=NOW)
    assert claims(token)["resource"] == {"group": "snapshot.storage.k8s.io", "version": "v1",
                                         "resource": "volumesnapshots"}
    tokens.verify(token, **{**CLONE, "source_kind": "snapshot"}, uid=None, now=NOW)
    with pytest.raises(WrongTokenPurpose):
        tokens.verify(token, **CLONE, uid=None, now=NOW)


def test_a_short_token_round_trips_within_its_lifetime_and_leeway(tokens: CloneTokens) -> None:
    token = tokens.issue(**CLONE, now=NOW)
    tokens.verify(token, **CLONE, uid=None, now=NOW + DEFAULT_LIFETIME + 9)
    tokens.verify(token, **CLONE, uid="dv-uid", now=NOW)  # a short token names no uid: any object may carry it
    with pytest.raises(TokenExpired) as caught:
        tokens.verify(token, **CLONE, uid=None, now=NOW + DEFAULT_LIFETIME + 11)
    assert caught.value.message == ("the clone token for persistentvolumeclaims golden/fedora into vms/disk has "
                                    "expired: delete the DataVolume and create it again to be authorized anew")


def test_the_extended_token_has_upstreams_claims_and_outlives_the_short_one(tokens: CloneTokens) -> None:
    extended = tokens.extend(tokens.issue(**CLONE, now=NOW), **CLONE, uid="dv-uid", now=NOW + 60)
    assert claims(extended) == {
        "iss": "cdi-deployment", "iat": int(NOW + 60), "nbf": int(NOW + 60),
        "exp": int(NOW + 60 + EXTENDED_LIFETIME), "operation": "Clone", "name": "fedora", "namespace": "golden",
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
        "params": {"targetNamespace": "vms", "targetName": "disk", "uid": "dv-uid"}}
    tokens.verify(extended, **CLONE, uid="dv-uid", now=NOW + 365 * 86400)


def test_an_expired_short_token_cannot_be_extended(tokens: CloneTokens) -> None:
    with pytest.raises(TokenExpired):
        tokens.extend(tokens.issue(**CLONE, now=NOW), **CLONE, uid="dv-uid", now=NOW + DEFAULT_LIFETIME + 60)


def test_the_extended_token_is_bound_to_its_object(tokens: CloneTokens) -> None:
    extended = tokens.extend(tokens.issue(**CLONE, now=NOW), **CLONE, uid="dv-uid", now=NOW)
    with pytest.raises(WrongTokenPurpose) as caught:
        tokens.verify(extended, **CLONE, uid="other-uid", now=NOW)
    assert "was issued for the object with uid dv-uid, not other-uid" in caught.value.message
    with pytest.raises(WrongTokenPurpose):
        tokens.verify(extended, **CLONE, uid=None, now=NOW)
    # Re-minted for the claim, as the controller does: it must say which object the token was extended for.
    with pytest.raises(WrongTokenPurpose):
        tokens.extend(extended, **CLONE, uid="pvc-uid", now=NOW)
    for_claim = tokens.extend(extended, **CLONE, uid="pvc-uid", token_uid="dv-uid", now=NOW)
    tokens.verify(for_claim, **CLONE, uid="pvc-uid", now=NOW)
    assert claims(for_claim)["params"]["uid"] == "pvc-uid"


@pytest.mark.parametrize(("field", "value"), [
    ("source_namespace", "other"), ("source_name", "ubuntu"), ("target_namespace", "prod"),
    ("target_name", "disk2"), ("source_kind", "snapshot")])
def test_a_token_for_another_clone_is_refused(tokens: CloneTokens, field: str, value: str) -> None:
    token = tokens.issue(**CLONE, now=NOW)
    with pytest.raises(WrongTokenPurpose) as caught:
        tokens.verify(token, **{**CLONE, field: value}, uid=None, now=NOW)
    assert caught.value.message.startswith(
        "the clone token authorizes cloning persistentvolumeclaims golden/fedora into vms/disk, not ")


def test_an_upload_token_is_not_a_clone_token(keys: list[SigningKey], tokens: CloneTokens) -> None:
    upload = issue_token(keys[0], upload_payload("golden", "fedora"), NOW)
    with pytest.raises(WrongTokenPurpose) as caught:
        tokens.verify(upload, **CLONE, uid=None, now=NOW)
    assert caught.value.message == "the token is not a clone token (operation 'Upload')"


def test_the_upload_proxy_refuses_clone_tokens(keys: list[SigningKey], tokens: CloneTokens) -> None:
    verifier = TokenVerifier([keys[0].public_key])
    with pytest.raises(WrongTokenPurpose):
        verifier.verify_upload(tokens.issue(**CLONE, now=NOW), NOW)
    extended = tokens.extend(tokens.issue(**CLONE, now=NOW), **CLONE, uid="dv-uid", now=NOW)
    with pytest.raises(InvalidToken):  # another issuer altogether
        verifier.verify_upload(extended, NOW)


def test_a_token_signed_by_another_key_is_refused(keys: list[SigningKey], tokens: CloneTokens) -> None:
    forged = CloneTokens.from_key(keys[1]).issue(**CLONE, now=NOW)
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(forged, **CLONE, uid=None, now=NOW)
    assert caught.value.message.startswith("the clone token for persistentvolumeclaims golden/fedora into vms/disk "
                                           "is not valid (")
    with pytest.raises(TokenRejected):
        tokens.verify("not-a-token", **CLONE, uid=None, now=NOW)


def test_a_rotated_ring_still_accepts_the_previous_key(keys: list[SigningKey]) -> None:
    ring = [KeyRing(keys[0])]
    tokens = CloneTokens(lambda: ring[0])
    token = tokens.issue(**CLONE, now=NOW)
    ring[0] = ring[0].rotate(keys[1])
    tokens.verify(token, **CLONE, uid=None, now=NOW)
    assert claims(tokens.issue(**CLONE, now=NOW)) == claims(token)  # same claims, now signed with keys[1]
    ring[0] = ring[0].rotate(generate_signing_key(NOW))
    with pytest.raises(InvalidToken):
        tokens.verify(token, **CLONE, uid=None, now=NOW)
