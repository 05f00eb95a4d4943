"""UploadTokenRequest answered in the create response: the pure handler, and the embedded store giving it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdi.apiserver.tokenrequest import answer_token_request
from cdi.cluster.errors import BadRequest, Invalid, MethodNotAllowed, ServerError
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.uploadtokens import KeyRingFile, upload_token_reviews
from cdi.tokens import DEFAULT_LIFETIME, InvalidToken, KeyRing, SigningKey, TokenVerifier, generate_signing_key

UTR_API = "upload.cdi.kubevirt.io/v1beta1"
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key(NOW)


def token_request(pvc: str | None = "disk", namespace: str | None = "vms", **extra: object) -> Object:
    meta: Object = {"name": "token-for-virtctl"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": UTR_API, "kind": "UploadTokenRequest", "metadata": meta,
            "spec": {"pvcName": pvc} if pvc is not None else {}, **extra}


def test_the_answer_is_the_request_with_a_token_for_the_claim(key: SigningKey) -> None:
    answer = answer_token_request(token_request(), "vms", key, NOW)
    assert answer["metadata"] == {"name": "token-for-virtctl", "namespace": "vms"}
    assert answer["spec"] == {"pvcName": "disk"}
    payload = TokenVerifier([key.public_key]).verify_upload(answer["status"]["token"], NOW + 1)
    assert (payload.name, payload.namespace) == ("disk", "vms")


def test_the_token_lives_upstreams_five_minutes(key: SigningKey) -> None:
    token = answer_token_request(token_request(), "vms", key, NOW)["status"]["token"]
    verifier = TokenVerifier([key.public_key])
    verifier.verify_upload(token, NOW + DEFAULT_LIFETIME)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify_upload(token, NOW + DEFAULT_LIFETIME + 60)


def test_the_namespace_of_the_url_wins_and_must_not_be_contradicted(key: SigningKey) -> None:
    answer = answer_token_request(token_request(namespace=None), "vms", key, NOW)
    assert answer["metadata"]["namespace"] == "vms"
    with pytest.raises(BadRequest, match="does not match the namespace sent on the request"):
        answer_token_request(token_request(namespace="other"), "vms", key, NOW)


@pytest.mark.parametrize("pvc", [None, ""])
def test_a_request_naming_no_claim_is_invalid(key: SigningKey, pvc: str | None) -> None:
    with pytest.raises(Invalid, match=r"spec\.pvcName"):
        answer_token_request(token_request(pvc), "vms", key, NOW)


def test_unknown_fields_are_refused_as_for_every_cdi_kind(key: SigningKey) -> None:
    with pytest.raises(BadRequest, match=r'strict decoding error: unknown field "spec\.pvc"'):
        answer_token_request({**token_request(), "spec": {"pvcName": "disk", "pvc": "x"}}, "vms", key, NOW)


def test_another_kind_is_refused(key: SigningKey) -> None:
    with pytest.raises(BadRequest, match="expected UploadTokenRequest"):
        answer_token_request({**token_request(), "kind": "DataVolume"}, "vms", key, NOW)


async def test_the_embedded_store_answers_with_a_token_and_stores_nothing(tmp_path: Path, key: SigningKey) -> None:
    ring = KeyRing(key)
    async with EmbeddedCluster(tmp_path / "store.db", reviews=upload_token_reviews(lambda: ring)) as cluster:
        before = (await cluster.list("v1", "ConfigMap")).resource_version
        answer = await cluster.create(token_request())
        after = (await cluster.list("v1", "ConfigMap")).resource_version
        with pytest.raises(MethodNotAllowed):  # nothing to list: the kind is answered, never stored
            await cluster.list(UTR_API, "UploadTokenRequest", "vms")
    assert after == before  # nothing was written
    payload = TokenVerifier.from_pem_bundle(ring.public_bundle_pem()).verify_upload(answer["status"]["token"],
                                                                                    time.time())
    assert (payload.name, payload.namespace) == ("disk", "vms")


async def test_the_embedded_answer_signs_with_the_file_cdi_serve_keeps(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "token-signing-keys.json")
    async with EmbeddedCluster(tmp_path / "store.db", reviews=upload_token_reviews(keys.read)) as cluster:
        with pytest.raises(ServerError, match="`cdi serve` creates it") as caught:
            await cluster.create(token_request())
        assert caught.value.code == 503
        first = KeyRing(generate_signing_key(NOW))
        keys.write(first)
        token = (await cluster.create(token_request()))["status"]["token"]
        TokenVerifier([first.current.public_key]).verify_upload(token, time.time())
        rotated = first.rotate(generate_signing_key(NOW + 1))
        keys.write(rotated)
        token = (await cluster.create(token_request()))["status"]["token"]
    TokenVerifier([rotated.current.public_key]).verify_upload(token, time.time())
    assert (tmp_path / "token-signing-keys.json").stat().st_mode & 0o777 == 0o600


async def test_a_store_opened_without_a_signer_says_it_answers_no_token_requests(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        with pytest.raises(BadRequest, match="answers no UploadTokenRequest"):
            await cluster.create(token_request())
