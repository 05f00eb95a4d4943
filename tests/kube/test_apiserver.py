"""`cdi apiserver` behind a real kube-apiserver: its webhooks judge DataVolumes, and its aggregated API
answers UploadTokenRequests through the API server's aggregator, with RBAC deciding who may ask.

The shared `kube_cluster` has no front proxy, and an aggregated API needs one, so this module starts its
own control plane from the same harness (`tests/support/kubecluster.py`) with the request-header flags
a real cluster has (`front_proxy_args`): a front-proxy CA, the proxy's client certificate, `front-proxy-client` as the one
allowed name. `cdi apiserver` runs as a process on 127.0.0.1. Service `cdi/cdi-api` is an ExternalName
for 127.0.0.1 — the API server resolves an ExternalName service itself, so the APIService and the
webhook configuration point at the Service as an install's do, and no kube-proxy is needed.
`front_proxy_args` and `cdi_apiserver` serve the upload end-to-end test too
(`tests/e2e/test_kubernetes_upload.py`).
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cdi.api.crdgen import all_crds
from cdi.cluster.errors import BadRequest, Forbidden, Invalid
from cdi.cluster.protocol import Object
from cdi.contracts.deployment import APISERVER_SERVICE, SIGNING_KEY_SECRET, UPLOAD_API_SERVICE
from cdi.kube import KubeCluster as KubeBackend
from cdi.kube import connect
from cdi.tokens import TokenVerifier
from tests.support.daemon import CDI, running, wait_until
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, free_port, kube_binaries
from tests.support.tls import ClientCert, TestPKI, make_client_cert, make_pki

NAMESPACE = "cdi"
PROXY_NAME = "front-proxy-client"
UTR_API = "upload.cdi.kubevirt.io/v1beta1"
DV_API = "cdi.kubevirt.io/v1beta1"


def front_proxy_args(front: TestPKI, proxy: ClientCert) -> list[str]:
    """The API server's request-header (front proxy) flags: what an aggregated API needs."""
    return [f"--requestheader-client-ca-file={front.ca_cert}", f"--requestheader-allowed-names={PROXY_NAME}",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={proxy.cert}", f"--proxy-client-key-file={proxy.key}"]


@dataclass
class Install:
    cluster: KubeCluster
    url: str  # cdi apiserver, directly
    serving: TestPKI
    proxy: ClientCert  # the front proxy's client certificate, to call cdi apiserver as the aggregator does
    log: Path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _install_crds(cluster: KubeCluster) -> None:
    for crd in all_crds():
        cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for crd in all_crds():
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        wait_until(f"CRD {crd['metadata']['name']}", lambda path=path: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in cluster.request("GET", path).get("status", {}).get("conditions", [])))


def register_cdi_api(cluster: KubeCluster, port: int, ca_bundle: str) -> None:
    """The Service, the DataVolume webhook and the APIService, shaped as an install's (`cdi manifests`)."""
    cluster.request("POST", f"/api/v1/namespaces/{NAMESPACE}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": APISERVER_SERVICE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}})
    service = {"namespace": NAMESPACE, "name": APISERVER_SERVICE, "port": port}
    cluster.request("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "cdi-api-datavolume-validate"},
        "webhooks": [{"name": "datavolume-validate.cdi.kubevirt.io", "admissionReviewVersions": ["v1", "v1beta1"],
                      "clientConfig": {"service": {**service, "path": "/datavolume-validate"},
                                       "caBundle": ca_bundle},
                      "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["cdi.kubevirt.io"],
                                 "apiVersions": ["v1beta1"], "resources": ["datavolumes"]}],
                      "failurePolicy": "Fail", "sideEffects": "None", "matchPolicy": "Exact",
                      "timeoutSeconds": 30}]})
    cluster.request("POST", "/apis/apiregistration.k8s.io/v1/apiservices", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": UPLOAD_API_SERVICE},
        "spec": {"group": "upload.cdi.kubevirt.io", "version": "v1beta1", "service": service,
                 "caBundle": ca_bundle, "groupPriorityMinimum": 1000, "versionPriority": 15}})


def upload_api_available(cluster: KubeCluster) -> bool:
    status = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{UPLOAD_API_SERVICE}")
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("status", {})
               .get("conditions", []))


def apiserver_healthy(url: str, serving: TestPKI) -> bool:
    context = ssl.create_default_context(cafile=str(serving.ca_cert))
    with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=5) as reply:
        return bool(reply.read() == b"ok")


@contextmanager
def cdi_apiserver(cluster: KubeCluster, work: Path) -> Iterator[tuple[str, TestPKI, Path]]:
    """`cdi apiserver` on 127.0.0.1 with a serving certificate from a throw-away CA, registered (Service,
    webhook, APIService) and Available; yields its URL, the serving PKI and its log, and stops it after."""
    serving = make_pki(work / "serving", server_names=(f"{APISERVER_SERVICE}.{NAMESPACE}.svc", "127.0.0.1"))
    port, log = free_port(), work / "cdi-apiserver.log"
    argv = [CDI, "apiserver", "--kubeconfig", str(cluster.kubeconfig_path), "--namespace", NAMESPACE,
            "--bind-address", "127.0.0.1", "--port", str(port), "--tls-cert-file", str(serving.server_cert),
            "--tls-private-key-file", str(serving.server_key)]
    url = f"https://127.0.0.1:{port}"
    with running("cdi apiserver", argv, log, lambda _: apiserver_healthy(url, serving)):
        register_cdi_api(cluster, port, _b64(serving.ca_pem()))
        wait_until("the upload APIService", lambda: upload_api_available(cluster), log=log)
        yield url, serving, log


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as error:
        pytest.skip(str(error))
    work = tmp_path_factory.mktemp("apiserver-kube")
    front = make_pki(work / "front-proxy")
    proxy = make_client_cert(front, PROXY_NAME)
    (work / "kube").mkdir()
    with KubeCluster(binaries, work / "kube", controllers=None,
                     extra_apiserver_args=front_proxy_args(front, proxy)) as cluster:
        _install_crds(cluster)
        for namespace in (NAMESPACE, "vms"):
            cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": namespace}})
        with cdi_apiserver(cluster, work) as (url, serving, log):
            yield Install(cluster, url, serving, proxy, log)


@pytest.fixture
async def admin(install: Install) -> AsyncIterator[KubeBackend]:
    async with await connect(install.cluster.kubeconfig_path) as cluster:
        yield cluster


async def as_user(install: Install, user: str) -> KubeBackend:
    return await connect(install.cluster.kubeconfig_for(user))


def datavolume(name: str, **http: Any) -> Object:
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": "vms"},
            "spec": {"source": {"http": {"url": "https://example.test/disk.img", **http}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def token_request(pvc: str = "disk") -> Object:
    return {"apiVersion": UTR_API, "kind": "UploadTokenRequest",
            "metadata": {"name": "token-for-virtctl", "namespace": "vms"}, "spec": {"pvcName": pvc}}


def signing_key_data(install: Install) -> dict[str, bytes]:
    secret = install.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{SIGNING_KEY_SECRET}")
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def grant_token_requests(install: Install, user: str) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/vms"
    install.cluster.request("POST", f"{rbac}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": f"upload-{user}"},
        "rules": [{"apiGroups": ["upload.cdi.kubevirt.io"], "resources": ["uploadtokenrequests"],
                   "verbs": ["create"]}]})
    install.cluster.request("POST", f"{rbac}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": f"upload-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"upload-{user}"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


async def test_a_datavolume_with_a_bad_url_is_refused_by_our_webhook(admin: KubeBackend) -> None:
    with pytest.raises(Invalid) as caught:
        await admin.create(datavolume("bad-url", url="nope"))
    # The same words the embedded store answers with: the API server prefixes the webhook's name itself.
    assert caught.value.message == ('admission webhook "datavolume-validate.cdi.kubevirt.io" denied the request: '
                                    "spec.source.http.url: Invalid source URL: nope")
    created = await admin.create(datavolume("good-url"))
    assert created["metadata"]["name"] == "good-url"


async def test_a_datavolume_with_an_unknown_field_is_refused_as_the_embedded_store_refuses_it(
        admin: KubeBackend) -> None:
    # The API server's strict decoding answers before any webhook (a structural CRD prunes unknown fields
    # from what webhooks see); our webhook words the same refusal identically (tests/apiserver).
    with pytest.raises(BadRequest) as caught:
        await admin.create(datavolume("unknown-field", bogus=1))
    assert 'strict decoding error: unknown field "spec.source.http.bogus"' in caught.value.message


async def test_an_upload_token_request_is_answered_through_the_aggregator(install: Install) -> None:
    grant_token_requests(install, "alice")
    async with await as_user(install, "alice") as alice:
        answer = await alice.create(token_request())
    payload = TokenVerifier.from_pem_bundle(signing_key_data(install)["id_rsa.pub"]).verify_upload(answer["status"]["token"], time.time())
    assert (payload.name, payload.namespace) == ("disk", "vms")
    assert answer["metadata"]["namespace"] == "vms" and answer["spec"] == {"pvcName": "disk"}


async def test_a_user_without_rbac_is_forbidden(install: Install) -> None:
    async with await as_user(install, "bob") as bob:
        with pytest.raises(Forbidden) as caught:
            await bob.create(token_request())
    # The API server's own authorization answers before the request reaches us.
    assert caught.value.message == ('uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "bob" cannot '
                                    'create resource "uploadtokenrequests" in API group "upload.cdi.kubevirt.io" in '
                                    'the namespace "vms"')


@pytest.mark.parametrize(("user", "expected"), [("carol", 200), ("mallory", 403)])
async def test_our_own_access_check_asks_the_api_server(install: Install, user: str, expected: int) -> None:
    """Called as the front proxy calls it, cdi apiserver asks the API server (SubjectAccessReview) itself."""
    if expected == 200:
        grant_token_requests(install, user)
    context = ssl.create_default_context(cafile=str(install.serving.ca_cert))
    context.load_cert_chain(install.proxy.cert, install.proxy.key)
    async with aiohttp.ClientSession() as session, session.post(
            f"{install.url}/apis/{UTR_API}/namespaces/vms/uploadtokenrequests", json=token_request(), ssl=context,
            headers={"X-Remote-User": user, "X-Remote-Group": "system:authenticated"}) as reply:
        body = await reply.json()
    assert reply.status == expected, body
    if expected == 403:
        assert body["message"].startswith(f'uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "{user}"')


def test_the_signing_key_secret_has_upstreams_shape(install: Install) -> None:
    data = signing_key_data(install)
    assert data["id_rsa"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert data["id_rsa.pub"].startswith(b"-----BEGIN PUBLIC KEY-----")


def test_kubectl_sees_the_aggregated_resource(install: Install) -> None:
    listed = install.cluster.kubectl("api-resources", "--api-group=upload.cdi.kubevirt.io", "-o", "wide")
    assert "uploadtokenrequests" in listed.stdout and "create" in listed.stdout, listed.stderr
