"""cdi-apiserver's application over real TLS on loopback, with the embedded store as its cluster.

The front proxy is played by a client certificate from a throw-away request-header CA; the store answers
the SubjectAccessReviews (allowed, or denied by a review we plug in) and the webhooks' reads.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cdi.apiserver.frontproxy import RequestHeaderAuth
from cdi.apiserver.server import ApiServer, serving_context, start
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.reviews import DEFAULT_REVIEWS, Review
from cdi.tokens import SigningKey, TokenVerifier, generate_signing_key
from tests.support.tls import ClientCert, TestPKI, make_client_cert, make_pki

TOKENS = "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/vms/uploadtokenrequests"
PROXY_NAME = "front-proxy-client"
SAR = ("authorization.k8s.io", "SubjectAccessReview")


@dataclass
class Served:
    url: str
    key: SigningKey
    cluster: EmbeddedCluster
    front_proxy: ClientCert
    stranger: ClientCert  # right CA, a name not in requestheader-allowed-names
    pki: TestPKI

    def context(self, client: ClientCert | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client is not None:
            context.load_cert_chain(client.cert, client.key)
        return context

    async def call(self, method: str, path: str, body: Any = None, *, client: ClientCert | None = None,
                   headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.request(
                method, self.url + path, json=body, data=data, headers=headers, ssl=self.context(client)) as reply:
            text = await reply.text()
            kind = reply.content_type
            return reply.status, (await reply.json() if kind == "application/json" else text)


def denying(request: Object) -> Object:
    return {**request, "status": {"allowed": False, "reason": "no RoleBinding grants it"}}


async def serve(tmp_path: Path, pki: TestPKI, reviews: dict[tuple[str, str], Review]) -> AsyncIterator[Served]:
    front = make_pki(tmp_path / "front-proxy")
    key = generate_signing_key(time.time())
    async with EmbeddedCluster(tmp_path / "store.db", reviews=reviews) as cluster:
        auth = RequestHeaderAuth(front.ca_pem().decode(), frozenset({PROXY_NAME}))
        runner, port = await start(ApiServer(cluster, key, auth), "127.0.0.1", 0,
                                   serving_context(pki.server_cert, pki.server_key, auth))
        try:
            yield Served(f"https://127.0.0.1:{port}", key, cluster, make_client_cert(front, PROXY_NAME),
                         make_client_cert(front, "someone-else"), pki)
        finally:
            await runner.cleanup()


@pytest.fixture
async def server(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, pki, dict(DEFAULT_REVIEWS)):
        yield served


@pytest.fixture
async def strict_server(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, pki, {**DEFAULT_REVIEWS, SAR: denying}):
        yield served


def token_request(pvc: str = "disk") -> Object:
    return {"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
            "metadata": {"name": "token-for-virtctl", "namespace": "vms"}, "spec": {"pvcName": pvc}}


AS_ALICE = {"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}


async def test_the_front_proxy_gets_a_token_for_its_user(server: Served) -> None:
    status, answer = await server.call("POST", TOKENS, token_request(), client=server.front_proxy, headers=AS_ALICE)
    assert status == 200, answer
    payload = TokenVerifier([server.key.public_key]).verify_upload(answer["status"]["token"], time.time())
    assert (payload.name, payload.namespace) == ("disk", "vms")


@pytest.mark.parametrize("who", ["nobody", "stranger", "no-user-header"])
async def test_anyone_but_the_front_proxy_is_unauthorized(server: Served, who: str) -> None:
    client = {"nobody": None, "stranger": server.stranger, "no-user-header": server.front_proxy}[who]
    headers = {} if who == "no-user-header" else AS_ALICE
    status, answer = await server.call("POST", TOKENS, token_request(), client=client, headers=headers)
    assert status == 401
    assert answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_a_user_rbac_does_not_allow_is_forbidden(strict_server: Served) -> None:
    status, answer = await strict_server.call("POST", TOKENS, token_request(), client=strict_server.front_proxy,
                                              headers={"X-Remote-User": "mallory"})
    assert status == 403
    assert answer["reason"] == "Forbidden" and answer["details"] == {"group": "upload.cdi.kubevirt.io",
                                                                     "kind": "uploadtokenrequests"}
    assert answer["message"] == ('uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "mallory" cannot '
                                 'create resource "uploadtokenrequests" in API group "upload.cdi.kubevirt.io" in the '
                                 'namespace "vms": no RoleBinding grants it')


async def test_a_request_without_a_claim_is_invalid(server: Served) -> None:
    status, answer = await server.call("POST", TOKENS, {**token_request(), "spec": {}}, client=server.front_proxy,
                                       headers=AS_ALICE)
    assert (status, answer["reason"]) == (422, "Invalid")


@pytest.mark.parametrize(("path", "check"), [
    ("/apis", lambda doc: doc["groups"][0]["name"] == "upload.cdi.kubevirt.io"),
    ("/apis/upload.cdi.kubevirt.io", lambda doc: doc["preferredVersion"]["version"] == "v1beta1"),
    ("/apis/upload.cdi.kubevirt.io/v1beta1",
     lambda doc: [(r["name"], r["verbs"]) for r in doc["resources"]] == [("uploadtokenrequests", ["create"])]),
    ("/openapi/v2", lambda doc: doc["swagger"] == "2.0"),
    ("/openapi/v3", lambda doc: "apis/upload.cdi.kubevirt.io/v1beta1" in doc["paths"]),
    ("/healthz", lambda text: text == "ok"),
    ("/readyz", lambda text: text == "ok"),
])
async def test_discovery_and_health_are_open(server: Served, path: str, check: Callable[[Any], bool]) -> None:
    status, answer = await server.call("GET", path)
    assert status == 200 and check(answer)


def review(obj: Object, old: Object | None = None) -> Object:
    kind = obj["apiVersion"].rpartition("/")
    request: Object = {"uid": "u-1", "kind": {"group": kind[0], "version": kind[2], "kind": obj["kind"]},
                       "operation": "UPDATE" if old else "CREATE", "name": obj["metadata"]["name"],
                       "namespace": "vms", "object": obj}
    if old:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def datavolume(url: str) -> Object:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "disk", "namespace": "vms"},
            "spec": {"source": {"http": {"url": url}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


async def test_the_validating_webhook_answers_allowed_and_denied(server: Served) -> None:
    status, answer = await server.call("POST", "/datavolume-validate", review(datavolume("https://example.test/d")))
    assert status == 200 and answer["response"] == {"uid": "u-1", "allowed": True}
    status, answer = await server.call("POST", "/datavolume-validate", review(datavolume("nope")))
    assert status == 200 and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == "spec.source.http.url: Invalid source URL: nope"


async def test_the_mutating_webhook_leaves_a_same_namespace_datavolume_alone(server: Served) -> None:
    status, answer = await server.call("POST", "/datavolume-mutate", review(datavolume("nope")))
    assert status == 200 and answer["response"] == {"uid": "u-1", "allowed": True}


def claim(size: str, storage_class: str) -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "vms"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class, "volumeName": "pv-1",
                     "resources": {"requests": {"storage": size}}},
            "status": {"phase": "Bound"}}


@pytest.mark.parametrize(("storage_class", "allowed"), [("expandable", True), ("fixed", False)])
async def test_handlers_read_other_objects_through_the_cluster(server: Served, storage_class: str,
                                                               allowed: bool) -> None:
    """A claim's growth is judged by its StorageClass, which the handler reads while it runs."""
    await server.cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                 "metadata": {"name": storage_class}, "provisioner": "example.com/csi",
                                 "allowVolumeExpansion": allowed})
    status, answer = await server.call("POST", "/datavolume-validate",
                                       review(claim("2Gi", storage_class), claim("1Gi", storage_class)))
    assert status == 200 and answer["response"]["allowed"] is allowed
    if not allowed:
        assert answer["response"]["status"]["code"] == 403


@pytest.mark.parametrize(("data", "content_type"), [
    (b"{not json", "application/json"),
    (b'{"apiVersion": "v1", "kind": "Pod"}', "application/json"),
    (b"{}", "text/plain"),
])
async def test_a_body_that_is_no_admission_review_is_400(server: Served, data: bytes, content_type: str) -> None:
    status, answer = await server.call("POST", "/datavolume-validate", data=data,
                                       headers={"Content-Type": content_type})
    assert status == 400 and answer["reason"] == "BadRequest"
