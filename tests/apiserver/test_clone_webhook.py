"""cdi-apiserver's datavolume-mutate webhook over loopback TLS: a cross-namespace clone DataVolume is authorized
by SubjectAccessReviews asked as the AdmissionReview's user, and gets the clone token as a JSONPatch.

The embedded store plays the API server: it holds the Namespaces and DataSources the webhook reads and
answers the reviews with a table we plug in (`Reviewer`), which also records what was asked.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.protocol import Object
from cdi.contracts.annotations import ANN_CLONE_TOKEN
from cdi.embedded.jsonpatch import apply_json_patch
from cdi.embedded.reviews import DEFAULT_REVIEWS
from cdi.tokens import CloneTokens
from tests.apiserver.test_server import SAR, Served, review, serve
from tests.support.tls import TestPKI

ALICE = {"username": "alice", "uid": "a-1", "groups": ["dev", "system:authenticated"], "extra": {"scope": ["x"]}}


class Reviewer:
    """Answers SubjectAccessReviews: allowed when (resource, subresource) is in `grants`; records each."""

    def __init__(self) -> None:
        self.grants: set[tuple[str, str]] = set()
        self.asked: list[Object] = []

    def __call__(self, request: Object) -> Object:
        self.asked.append(request["spec"])
        attributes = request["spec"]["resourceAttributes"]
        allowed = (attributes["resource"], attributes.get("subresource", "")) in self.grants
        return {**request, "status": {"allowed": allowed}}


@pytest.fixture
def reviewer() -> Reviewer:
    return Reviewer()


@pytest.fixture
async def server(tmp_path: Path, pki: TestPKI, reviewer: Reviewer) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, pki, {**DEFAULT_REVIEWS, SAR: reviewer}):
        await served.cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "golden"}})
        yield served


def clone(namespace: str = "golden", **source: Any) -> Object:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "disk", "namespace": "vms", "annotations": {"keep": "me"}},
            "spec": {"source": source or {"pvc": {"namespace": namespace, "name": "fedora"}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def as_user(doc: Object, user: Object = ALICE) -> Object:
    doc["request"]["userInfo"] = user
    return doc


async def mutate(server: Served, doc: Object) -> Object:
    status, answer = await server.call("POST", "/datavolume-mutate", doc)
    assert status == 200, answer
    response: Object = answer["response"]
    return response


def patched(obj: Object, response: Object) -> Object:
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    result: Object = apply_json_patch(obj, json.loads(base64.b64decode(response["patch"])))
    return result


async def test_an_authorized_clone_gets_a_token_the_controller_accepts(server: Served, reviewer: Reviewer) -> None:
    reviewer.grants.add(("datavolumes", "source"))
    response = await mutate(server, as_user(review(clone())))
    annotations = patched(clone(), response)["metadata"]["annotations"]
    assert annotations["keep"] == "me"
    CloneTokens.from_key(server.key).verify(annotations[ANN_CLONE_TOKEN], source_kind="pvc",
                                            source_namespace="golden", source_name="fedora",
                                            target_namespace="vms", target_name="disk", uid=None,
                                            now=time.time())
    assert reviewer.asked == [{
        "user": "alice", "uid": "a-1", "groups": ["dev", "system:authenticated"], "extra": {"scope": ["x"]},
        "resourceAttributes": {"namespace": "golden", "verb": "create", "group": "cdi.kubevirt.io",
                               "resource": "datavolumes", "subresource": "source", "name": "fedora"}}]


async def test_creating_pods_in_the_source_namespace_is_enough_for_a_pvc(server: Served, reviewer: Reviewer) -> None:
    reviewer.grants.add(("pods", ""))
    response = await mutate(server, as_user(review(clone())))
    assert ANN_CLONE_TOKEN in patched(clone(), response)["metadata"]["annotations"]
    assert [spec["resourceAttributes"]["resource"] for spec in reviewer.asked] == ["datavolumes", "pods"]


async def test_a_user_without_permission_is_refused_with_upstreams_words(server: Served, reviewer: Reviewer) -> None:
    response = await mutate(server, as_user(review(clone(snapshot={"namespace": "golden", "name": "snap"}))))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403 and response["status"]["reason"] == "Forbidden"
    assert response["status"]["message"] == "User alice has insufficient permissions in clone source namespace golden"
    # pods denied: the snapshot's second alternative (pods and pvcs) is decided without asking for pvcs
    assert [spec["resourceAttributes"]["resource"] for spec in reviewer.asked] == ["datavolumes", "pods"]


async def test_a_missing_source_namespace_is_refused(server: Served, reviewer: Reviewer) -> None:
    reviewer.grants.add(("datavolumes", "source"))
    response = await mutate(server, as_user(review(clone(namespace="nowhere"))))
    assert response["allowed"] is False and response["status"]["code"] == 422
    assert response["status"]["message"] == 'spec.source.pvc: namespaces "nowhere" not found'


@pytest.mark.parametrize("doc", [
    review(clone(namespace="vms")),  # same namespace
    review(clone(), old=clone()),  # an update is never authorized anew
])
async def test_no_token_is_needed(server: Served, reviewer: Reviewer, doc: Object) -> None:
    response = await mutate(server, as_user(doc))
    assert response == {"uid": "u-1", "allowed": True}
    assert reviewer.asked == []
