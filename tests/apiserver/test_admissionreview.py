"""The AdmissionReview translation: what the API server sends in, what our webhooks answer, no HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cdi.admission import admit
from cdi.apiserver.admissionreview import admission_request, allowed, decode_review, denied, webhook_message
from cdi.cluster.errors import ApiError, BadRequest, Invalid
from cdi.cluster.protocol import Object

DV_KIND = {"group": "cdi.kubevirt.io", "version": "v1beta1", "kind": "DataVolume"}


def datavolume(url: str = "https://example.test/disk.img", **http: Any) -> Object:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "disk", "namespace": "vms"},
            "spec": {"source": {"http": {"url": url, **http}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def review(obj: Object | None, operation: str = "CREATE", old: Object | None = None,
           kind: dict[str, str] = DV_KIND, api_version: str = "admission.k8s.io/v1") -> Object:
    request: Object = {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": kind, "operation": operation,
                       "name": "disk", "namespace": "vms", "userInfo": {"username": "alice"}}
    if obj is not None:
        request["object"] = obj
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def answer(doc: Object) -> Object:
    """What the validating webhook answers for the review `doc`."""
    request = decode_review(doc)
    judged = admission_request(request)
    try:
        if judged is not None:
            admit(judged, lambda group, kind, name, namespace: None)
    except ApiError as error:
        return denied(request, error)
    return allowed(request)


def test_a_valid_datavolume_is_allowed_and_the_uid_is_echoed() -> None:
    result = answer(review(datavolume()))
    assert result == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}}


def test_a_bad_url_is_denied_with_code_message_and_cause() -> None:
    response = answer(review(datavolume("ftp//nope")))["response"]
    assert response["allowed"] is False
    # The API server puts 'admission webhook "datavolume-validate.cdi.kubevirt.io" denied the request: ' in
    # front of the message itself, so the webhook leaves it out.
    assert response["status"] == {
        "status": "Failure", "reason": "Invalid", "code": 422,
        "message": "spec.source.http.url: Invalid source URL: ftp//nope",
        "details": {"causes": [{"message": "spec.source.http.url: Invalid source URL: ftp//nope"}]}}


def test_an_unknown_field_is_a_strict_decoding_error_with_code_400() -> None:
    response = answer(review(datavolume(bogus=1)))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400 and response["status"]["reason"] == "BadRequest"
    assert response["status"]["message"] == ('DataVolume in version "v1beta1" cannot be handled as a DataVolume: '
                                             'strict decoding error: unknown field "spec.source.http.bogus"')


def test_an_update_of_the_spec_is_denied_as_immutable() -> None:
    old, new = datavolume(), datavolume("https://example.test/other.img")
    response = answer(review(new, "UPDATE", old))["response"]
    assert response["allowed"] is False and "Cannot update DataVolume Spec" in response["status"]["message"]
    relabelled = {**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}}
    assert answer(review(relabelled, "UPDATE", old))["response"]["allowed"] is True


def test_the_answer_keeps_the_review_version() -> None:
    assert answer(review(datavolume(), api_version="admission.k8s.io/v1beta1"))["apiVersion"] == \
        "admission.k8s.io/v1beta1"


@pytest.mark.parametrize(("operation", "kind"), [
    ("DELETE", DV_KIND),
    ("CONNECT", DV_KIND),
    ("CREATE", {"group": "example.com", "version": "v1", "kind": "Widget"}),
])
def test_nothing_of_ours_judges_deletes_or_foreign_kinds(operation: str, kind: dict[str, str]) -> None:
    assert admission_request(decode_review(review(datavolume(bogus=1), operation, kind=kind))) is None


def test_a_generated_name_is_taken_from_the_request() -> None:
    dv = datavolume()
    del dv["metadata"]["name"]
    judged = admission_request(decode_review(review(dv)))
    assert judged is not None and judged.name == "disk"
    assert "name" not in dv["metadata"]  # the review's object is left as it came


@pytest.mark.parametrize("doc", [
    {"apiVersion": "v1", "kind": "Pod"},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": DV_KIND}},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "kind": "DataVolume"}},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
     "request": {"uid": "u", "kind": DV_KIND, "object": ["not", "an", "object"]}},
])
def test_what_is_not_an_admission_review_is_a_bad_request(doc: Object) -> None:
    with pytest.raises(BadRequest):
        decode_review(doc)


def test_an_update_without_the_old_object_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="oldObject"):
        admission_request(decode_review(review(datavolume(), "UPDATE")))


def test_a_patch_travels_base64_encoded() -> None:
    patch = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    response = allowed(decode_review(review(datavolume())), patch)["response"]
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == patch


def test_only_the_denial_prefix_is_taken_off_the_message() -> None:
    assert webhook_message(Invalid('admission webhook "x.cdi.kubevirt.io" denied the request: a: b')) == "a: b"
    assert webhook_message(Invalid("plain message")) == "plain message"
