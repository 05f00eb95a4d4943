"""Cross-namespace clone authorization on a real kube-apiserver, with `cdi apiserver`'s datavolume-mutate webhook
and the RBAC `cdi manifests` renders: the API server decides, through SubjectAccessReviews asked as the user.

The install's own documents (`cdi.install.render_all`) are applied: service accounts and roles, the users'
aggregated roles (`cdi.kubevirt.io:edit`, `cdi.kubevirt.io:clone-sourcer`), and the DataVolume webhook
configurations. Two things differ from a cluster with pods: Service `cdi-api` is an ExternalName for
127.0.0.1 (the API server resolves it itself; no kube-proxy), so the webhooks point at the port `cdi apiserver`
listens on, and their namespaceSelector is narrowed to this module's namespaces, so nothing else of the
session's shared control plane ever reaches them. `cdi apiserver` runs as its own service account with the
install's serving certificate. Everything cluster-wide is removed afterwards, webhooks first.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.apiserver.signingkey import ensure_signing_key
from cdi.cluster.errors import Forbidden, NotFound
from cdi.cluster.protocol import Object
from cdi.contracts import deployment as dep
from cdi.contracts.annotations import ANN_CLONE_TOKEN
from cdi.install import InstallOptions, render_all
from cdi.install.objects import install_kinds
from cdi.install.serverside import apply_documents
from cdi.install.tls import credentials
from cdi.kube import connect
from cdi.tokens import CloneTokens
from tests.support.daemon import CDI, running
from tests.support.kubecluster import KubeCluster as Harness
from tests.support.kubecluster import free_port

DV_API = "cdi.kubevirt.io/v1beta1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
LABEL = "pycdi.kubevirt.io/clone-authorization"
# Only these parts of an install are needed here (no Deployment runs: the harness has no kubelet).
KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
WEBHOOKS = ("cdi-api-datavolume-validate", "cdi-api-datavolume-mutate")


@dataclass(frozen=True)
class Install:
    cluster: Harness
    home: str  # CDI's namespace
    source: str  # where the golden volumes live
    target: str  # where users create DataVolumes


def _service_account(cluster: Harness, namespace: str, name: str) -> Path:
    return cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:{name}", (
        "system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


def _documents(home: str, run: str, port: int) -> tuple[list[Object], Any]:
    creds = credentials(home, datetime.now(UTC))
    documents = []
    for doc in render_all(InstallOptions(creds, home)):
        if doc["kind"] in KINDS:
            documents.append(doc)
        elif doc["metadata"]["name"] in WEBHOOKS:
            for hook in doc["webhooks"]:
                hook["clientConfig"]["service"]["port"] = port
                hook["namespaceSelector"] = {"matchLabels": {LABEL: run}}
            documents.append(doc)
    return documents, creds


def _healthy(url: str, ca_pem: bytes) -> bool:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = False  # the certificate names the Service, we call 127.0.0.1
    with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=5) as reply:
        return bool(reply.read() == b"ok")


async def _remove(kubeconfig: Path, documents: list[Object]) -> None:
    async with await connect(kubeconfig, kinds=install_kinds()) as cluster:
        for doc in sorted(documents, key=lambda d: d["metadata"]["name"] not in WEBHOOKS):  # webhooks first
            meta = doc["metadata"]
            try:
                await cluster.delete(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace"))
            except NotFound:
                pass


def _delete_quietly(cluster: Harness, path: str) -> None:
    try:
        cluster.request("DELETE", path)
    except urllib.error.HTTPError as error:
        error.close()


@pytest.fixture(scope="module")
def install(kube_cluster: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    run = uuid.uuid4().hex[:6]
    home, source, target = f"cdi-clone-{run}", f"golden-{run}", f"vms-{run}"
    work = tmp_path_factory.mktemp("clone-authorization")
    port = free_port()
    documents, creds = _documents(home, run, port)
    for namespace in (home, source, target):
        kube_cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": {LABEL: run, "pycdi.kubevirt.io/test": "true"}}})
    try:
        kube_cluster.request("POST", f"/api/v1/namespaces/{home}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": dep.APISERVER_SERVICE},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}})
        (work / "tls.crt").write_bytes(creds.apiserver.cert_pem)
        (work / "tls.key").write_bytes(creds.apiserver.key_pem)
        asyncio.run(_apply(kube_cluster.kubeconfig_path, [d for d in documents if d["metadata"]["name"] not in WEBHOOKS]))
        argv = [CDI, "apiserver", "--kubeconfig", str(_service_account(kube_cluster, home, dep.APISERVER_SA)),
                "--namespace", home, "--bind-address", "127.0.0.1", "--port", str(port),
                "--tls-cert-file", str(work / "tls.crt"), "--tls-private-key-file", str(work / "tls.key")]
        url = f"https://127.0.0.1:{port}"
        with running("cdi apiserver", argv, work / "cdi-apiserver.log", lambda _: _healthy(url, creds.ca.cert_pem)):
            asyncio.run(_apply(kube_cluster.kubeconfig_path, [d for d in documents if d["metadata"]["name"] in WEBHOOKS]))
            yield Install(kube_cluster, home, source, target)
    finally:
        asyncio.run(_remove(kube_cluster.kubeconfig_path, documents))
        for namespace in (home, source, target):
            _delete_quietly(kube_cluster, f"/api/v1/namespaces/{namespace}")


async def _apply(kubeconfig: Path, documents: list[Object]) -> None:
    async with await connect(kubeconfig, kinds=install_kinds()) as cluster:
        await apply_documents(cluster, documents)


def bind(install: Install, user: str, role: str, namespace: str, kind: str = "ClusterRole") -> None:
    install.cluster.request("POST", f"{RBAC}/namespaces/{namespace}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{user}-{role.replace(':', '-')}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def pod_creator(install: Install, namespace: str) -> str:
    """A Role that may create pods (and nothing else) in `namespace`: upstream's fallback for a PVC source."""
    install.cluster.request("POST", f"{RBAC}/namespaces/{namespace}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-creator"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]})
    return "pod-creator"


def clone(install: Install, name: str, kind: str = "pvc") -> Object:
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": install.target},
            "spec": {"source": {kind: {"namespace": install.source, "name": "fedora"}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


async def create_as(install: Install, user: str, dv: Object) -> Object:
    async with await connect(install.cluster.kubeconfig_for(user, ("system:authenticated",))) as cluster:
        return await cluster.create(dv)


async def controllers_clone_tokens(install: Install) -> CloneTokens:
    """What `cdi controller` builds, as its own service account: the key from cdi-api-signing-key."""
    kubeconfig = _service_account(install.cluster, install.home, dep.CONTROLLER_SA)
    async with await connect(kubeconfig) as cluster:
        return CloneTokens.from_key(await ensure_signing_key(cluster, install.home, time.time()))


def verify(tokens: CloneTokens, install: Install, dv: Object, kind: str = "pvc") -> None:
    tokens.verify(dv["metadata"]["annotations"][ANN_CLONE_TOKEN], source_kind="pvc" if kind == "pvc" else "snapshot",
                  source_namespace=install.source, source_name="fedora", target_namespace=install.target,
                  target_name=dv["metadata"]["name"], uid=dv["metadata"]["uid"], now=time.time())


async def test_an_editor_of_the_target_alone_may_not_clone_until_bound_as_clone_sourcer(install: Install) -> None:
    bind(install, "alice", "cdi.kubevirt.io:edit", install.target)
    with pytest.raises(Forbidden) as caught:
        await create_as(install, "alice", clone(install, "from-golden"))
    assert caught.value.message == (
        'admission webhook "datavolume-mutate.cdi.kubevirt.io" denied the request: '
        f"User alice has insufficient permissions in clone source namespace {install.source}")

    bind(install, "alice", "cdi.kubevirt.io:clone-sourcer", install.source)
    created = await create_as(install, "alice", clone(install, "from-golden"))
    verify(await controllers_clone_tokens(install), install, created)


async def test_a_same_namespace_clone_needs_no_token(install: Install) -> None:
    bind(install, "erin", "cdi.kubevirt.io:edit", install.target)
    dv = clone(install, "local")
    dv["spec"]["source"]["pvc"]["namespace"] = install.target
    created = await create_as(install, "erin", dv)
    assert ANN_CLONE_TOKEN not in (created["metadata"].get("annotations") or {})


async def test_creating_pods_in_the_source_namespace_allows_a_pvc_clone_but_not_a_snapshot_clone(
        install: Install) -> None:
    bind(install, "bob", "cdi.kubevirt.io:edit", install.target)
    bind(install, "bob", pod_creator(install, install.source), install.source, kind="Role")
    created = await create_as(install, "bob", clone(install, "by-pods"))
    verify(await controllers_clone_tokens(install), install, created)
    with pytest.raises(Forbidden) as caught:  # a snapshot needs pods and "pvcs" (sic, as upstream asks)
        await create_as(install, "bob", clone(install, "by-pods-snapshot", kind="snapshot"))
    assert caught.value.message.endswith(f"User bob has insufficient permissions in clone source namespace "
                                         f"{install.source}")


async def test_an_update_is_not_authorized_anew(install: Install) -> None:
    bind(install, "carol", "cdi.kubevirt.io:edit", install.target)
    bind(install, "carol", "cdi.kubevirt.io:clone-sourcer", install.source)
    created = await create_as(install, "carol", clone(install, "relabelled"))
    async with await connect(install.cluster.kubeconfig_for("carol", ("system:authenticated",))) as carol:
        patched = await carol.patch(DV_API, "DataVolume", "relabelled", {"metadata": {"labels": {"a": "b"}}},
                                    install.target)
    assert patched["metadata"]["annotations"][ANN_CLONE_TOKEN] == created["metadata"]["annotations"][ANN_CLONE_TOKEN]



async def test_a_clone_through_a_data_source_is_authorized_for_the_volume_it_names(install: Install) -> None:
    """cdi apiserver reads the DataSource (and the source Namespace) as its own service account."""
    bind(install, "dave", "cdi.kubevirt.io:edit", install.target)
    install.cluster.request("POST", f"/apis/{DV_API}/namespaces/{install.source}/datasources", {
        "apiVersion": DV_API, "kind": "DataSource", "metadata": {"name": "fedora-latest"},
        "spec": {"source": {"pvc": {"namespace": install.source, "name": "fedora"}}}})
    dv = clone(install, "from-data-source")
    dv["spec"].pop("source")
    dv["spec"]["sourceRef"] = {"kind": "DataSource", "namespace": install.source, "name": "fedora-latest"}
    with pytest.raises(Forbidden):
        await create_as(install, "dave", dv)
    bind(install, "dave", "cdi.kubevirt.io:clone-sourcer", install.source)
    verify(await controllers_clone_tokens(install), install, await create_as(install, "dave", dv))
