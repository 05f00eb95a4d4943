"""`cdi manifests` against a real kube-apiserver: everything applies, applies again without a change, and
each component's service account may do what its code does and nothing else.

The install goes into a namespace of its own, applied with server-side apply through `cdi.kube` (as
`kubectl apply --server-side` would); no pod runs (the harness has no kubelet), so the Deployments are
only stored. Permissions are checked as each service account: a kubeconfig for
`system:serviceaccount:<ns>:<sa>` in the groups a pod's token carries. A request counts as allowed when
the API server answers anything but 403 (a NotFound means authorization passed). The webhooks and the
APIService point at a `cdi-api` with no pods behind it, so the module removes them (and the other
cluster-wide objects) when it is done, before any other suite writes a DataVolume.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.cli.installmanifests import run as run_manifests
from cdi.cli.main import _one_line
from cdi.cluster.errors import ApiError, Forbidden, NotFound, TooManyRequests
from cdi.contracts import deployment as dep
from cdi.install import InstallOptions, render_all
from cdi.install.objects import install_kinds
from cdi.install.serverside import apply_documents
from cdi.install.tls import UPLOADSERVER_CA_SECRET, credentials
from cdi.kube import KubeCluster, connect
from tests.support.kubecluster import KubeCluster as Harness

IMAGE = "registry.example/pycdi:test"
CDI_API = "cdi.kubevirt.io/v1beta1"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


@dataclass(frozen=True)
class Install:
    namespace: str
    documents: list[dict[str, Any]]
    first: list[dict[str, Any]]  # as the first apply stored them
    settled: list[dict[str, Any]]  # read back once the API server's own controllers wrote their status
    second: list[dict[str, Any]]


async def _established(cluster: KubeCluster, name: str) -> bool:
    crd = await cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    return any(c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", []))


async def _served(cluster: KubeCluster, crd: dict[str, Any]) -> bool:
    """Established, and its watch cache ready (until then the API server answers 429 "storage is (re)initializing")."""
    names = crd["spec"]["names"]
    if not await _established(cluster, crd["metadata"]["name"]):
        return False
    try:
        await cluster.list(f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}", names["kind"])
    except TooManyRequests:
        return False
    return True


async def _apply_twice(kubeconfig: Path, documents: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    async with await connect(kubeconfig, kinds=install_kinds()) as cluster:
        first = await apply_documents(cluster, documents)
        crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
        for _ in range(300):
            if all([await _served(cluster, crd) for crd in crds]):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the CRDs were not served within 30 s")
        await asyncio.sleep(1.0)  # the APIService's availability check writes its status once
        settled = [await cluster.get(d["apiVersion"], d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                   for d in documents]
        second = await apply_documents(cluster, documents)
    return first, settled, second


async def _uninstall(kubeconfig: Path, documents: list[dict[str, Any]], namespace: str) -> None:
    """Remove what outlives the namespace: webhooks and the APIService first (they point at nothing), then RBAC.
    The CRDs stay: other suites of the session use the same ones."""
    async with await connect(kubeconfig, kinds=install_kinds()) as cluster:
        for doc in reversed(documents):
            meta = doc["metadata"]
            if doc["kind"] == "CustomResourceDefinition" or meta.get("namespace") == namespace:
                continue
            try:
                await cluster.delete(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace"))
            except NotFound:
                pass


@pytest.fixture(scope="module")
def install(kube_cluster: Harness) -> Iterator[Install]:
    namespace = f"cdi-install-{uuid.uuid4().hex[:6]}"
    documents = render_all(InstallOptions(credentials(namespace, datetime.now(UTC)), namespace, IMAGE))
    try:
        first, settled, second = asyncio.run(_apply_twice(kube_cluster.kubeconfig_path, documents))
        yield Install(namespace, documents, first, settled, second)
    finally:
        asyncio.run(_uninstall(kube_cluster.kubeconfig_path, documents, namespace))


def _versions(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in objects}


def test_everything_applies_and_a_second_apply_changes_nothing(install: Install) -> None:
    assert [(o["kind"], o["metadata"]["name"]) for o in install.first] == [
        (d["kind"], d["metadata"]["name"]) for d in install.documents]
    assert all(o["metadata"]["uid"] for o in install.first)
    settled, second = _versions(install.settled), _versions(install.second)
    crds = {key for key in settled if key[0] == "CustomResourceDefinition"}
    assert crds and {key: second[key] for key in crds} == {key: settled[key] for key in crds}
    changed = sorted(key for key in settled if settled[key] != second[key])
    assert changed == [], f"the second apply rewrote {changed}"


async def test_the_stored_objects_are_what_was_rendered(kube_cluster: Harness, install: Install) -> None:
    async with await connect(kube_cluster.kubeconfig_path, kinds=install_kinds()) as cluster:
        deployment = await cluster.get("apps/v1", "Deployment", dep.UPLOADPROXY, install.namespace)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        api_service = await cluster.get("apiregistration.k8s.io/v1", "APIService", dep.UPLOAD_API_SERVICE)
        assert api_service["spec"]["service"] == {"namespace": install.namespace, "name": dep.APISERVER_SERVICE,
                                                  "port": 443}
        service = await cluster.get("v1", "Service", dep.APISERVER_SERVICE, install.namespace)
        assert service["spec"]["ports"][0]["targetPort"] == dep.APISERVER_PORT


async def test_the_api_server_sends_datavolume_writes_to_cdi_api(kube_cluster: Harness, install: Install,
                                                                 kube_namespace: str) -> None:
    """The webhooks are live: with no cdi-apiserver pod behind `cdi-api`, a DataVolume cannot be written."""
    dv = {"apiVersion": CDI_API, "kind": "DataVolume", "metadata": {"name": "blocked", "namespace": kube_namespace},
          "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}
    async with await connect(kube_cluster.kubeconfig_path, kinds=install_kinds()) as cluster:
        with pytest.raises(ApiError) as refused:
            await cluster.create(dv)
    assert "datavolume-mutate.cdi.kubevirt.io" in refused.value.message, refused.value.message
    assert f"{dep.APISERVER_SERVICE}" in refused.value.message


def service_account(kube_cluster: Harness, namespace: str, name: str) -> Path:
    return kube_cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:{name}", (
        "system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


async def allowed(call: Awaitable[Any]) -> None:
    """Passes authorization: any answer but 403 (NotFound, Conflict... mean RBAC let it through)."""
    try:
        await call
    except Forbidden as e:
        raise AssertionError(f"forbidden: {e.message}") from e
    except ApiError:
        pass


async def forbidden(call: Awaitable[Any]) -> Forbidden:
    with pytest.raises(Forbidden) as refused:
        await call
    return refused.value


def _pvc(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def _secret(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {"k": "dg=="}}


def _review(kind: str) -> dict[str, Any]:
    if kind == "TokenReview":
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "not-a-token"}}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "alice", "resourceAttributes": {"verb": "create", "group": "cdi.kubevirt.io",
                                                             "resource": "datavolumes", "subresource": "source"}}}


def _lease(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": namespace},
            "spec": {"holderIdentity": "test"}}


def _snapshot(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": {"persistentVolumeClaimName": "claim"}}}


def _clone_source(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": CDI_API, "kind": "VolumeCloneSource", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": {"kind": "PersistentVolumeClaim", "name": "claim"}}}


async def test_the_controller_may_do_its_work_and_no_more(kube_cluster: Harness, install: Install,
                                                         kube_namespace: str) -> None:
    home, user = install.namespace, kube_namespace
    async with await connect(service_account(kube_cluster, home, dep.CONTROLLER_SA), kinds=install_kinds()) as sa:
        # What its informers list and watch, cluster-wide.
        for api_version, kind in ((CDI_API, "DataVolume"), (CDI_API, "StorageProfile"), (CDI_API, "DataSource"),
                                  (CDI_API, "DataImportCron"), (CDI_API, "VolumeCloneSource"),
                                  (CDI_API, "VolumeImportSource"), (CDI_API, "VolumeUploadSource"),
                                  ("storage.k8s.io/v1", "StorageClass"), ("storage.k8s.io/v1", "CSIDriver"),
                                  ("v1", "PersistentVolume"), (SNAPSHOT_API, "VolumeSnapshot"),
                                  (SNAPSHOT_API, "VolumeSnapshotContent"), (SNAPSHOT_API, "VolumeSnapshotClass")):
            await sa.list(api_version, kind)
        await sa.list("v1", "Pod", label_selector={"cdi.kubevirt.io": "importer"})
        await allowed(sa.patch_status(CDI_API, "DataVolume", "missing", {"status": {"phase": "Pending"}}, user))
        await allowed(sa.create(_pvc("claim", user)))
        await allowed(sa.patch("v1", "PersistentVolumeClaim", "claim", {"metadata": {"labels": {"a": "b"}}}, user))
        await allowed(sa.update(_pvc("claim", user)))  # hostclone: its finalizer
        await allowed(sa.delete("v1", "PersistentVolumeClaim", "claim", user))  # PVC′, temporary clone claims
        await allowed(sa.patch("v1", "PersistentVolume", "missing", {"spec": {"claimRef": None}}))  # Rebind
        await allowed(sa.create(_snapshot("snap", user)))
        await allowed(sa.delete(SNAPSHOT_API, "VolumeSnapshot", "snap", user))
        await allowed(sa.create(_clone_source("clone-source", user)))
        await allowed(sa.delete(CDI_API, "VolumeCloneSource", "clone-source", user))
        await allowed(sa.patch(CDI_API, "DataSource", "missing", {"metadata": {"labels": {"a": "b"}}}, user))
        await allowed(sa.patch(CDI_API, "DataImportCron", "missing", {"metadata": {"finalizers": []}}, user))
        await allowed(sa.delete(CDI_API, "DataVolume", "missing", user))
        await allowed(sa.create(_secret("upload-tls", user)))
        await allowed(sa.get("v1", "Secret", "upload-tls", user))  # by name: a cron's secretRef
        await allowed(sa.delete("v1", "Secret", "upload-tls", user))
        await allowed(sa.get("v1", "ConfigMap", "kube-root-ca.crt", user))  # by name: a cron's certConfigMap
        await allowed(sa.get("v1", "Secret", UPLOADSERVER_CA_SECRET, home))
        await allowed(sa.create(_lease("leader", home)))
        await forbidden(sa.list("v1", "Secret"))
        await forbidden(sa.list("v1", "Secret", user))
        await forbidden(sa.update(_secret("upload-tls", user)))  # its own Secrets elsewhere: never rewritten
        await forbidden(sa.list("v1", "ConfigMap", user))
        await forbidden(sa.delete("v1", "PersistentVolume", "missing"))
        await forbidden(sa.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
                                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                            "hostPath": {"path": "/tmp"}}}))
        await forbidden(sa.delete(SNAPSHOT_API, "VolumeSnapshotContent", "missing"))
        await forbidden(sa.create({"apiVersion": CDI_API, "kind": "VolumeImportSource",
                                   "metadata": {"name": "source", "namespace": user},
                                   "spec": {"source": {"blank": {}}}}))
        await forbidden(sa.create(_review("SubjectAccessReview")))  # admission's (cdi apiserver), not the controller's
        await forbidden(sa.create(_lease("leader", user)))
        await forbidden(sa.list("apps/v1", "Deployment", home))
        await forbidden(sa.list("rbac.authorization.k8s.io/v1", "ClusterRole"))


async def test_the_api_server_may_authenticate_and_keep_its_key(kube_cluster: Harness, install: Install,
                                                               kube_namespace: str) -> None:
    home = install.namespace
    async with await connect(service_account(kube_cluster, home, dep.APISERVER_SA), kinds=install_kinds()) as sa:
        await allowed(sa.create(_review("SubjectAccessReview")))
        await allowed(sa.create(_review("TokenReview")))
        await sa.get("v1", "ConfigMap", "extension-apiserver-authentication", "kube-system")
        await allowed(sa.create(_secret(dep.SIGNING_KEY_SECRET, home)))
        await allowed(sa.get("v1", "Secret", dep.SIGNING_KEY_SECRET, home))
        await forbidden(sa.get("v1", "ConfigMap", "kube-root-ca.crt", "kube-system"))
        await forbidden(sa.get("v1", "Secret", "anything", kube_namespace))
        await forbidden(sa.list(CDI_API, "DataVolume"))
        await forbidden(sa.delete("v1", "Secret", dep.SIGNING_KEY_SECRET, home))


async def test_the_upload_proxy_may_only_look_up_an_upload(kube_cluster: Harness, install: Install,
                                                          kube_namespace: str) -> None:
    home, user = install.namespace, kube_namespace
    async with await connect(service_account(kube_cluster, home, dep.UPLOADPROXY_SA), kinds=install_kinds()) as sa:
        for kind in ("PersistentVolumeClaim", "Pod", "Service"):
            await allowed(sa.get("v1", kind, "cdi-upload-disk", user))
        await forbidden(sa.list("v1", "PersistentVolumeClaim", user))
        await forbidden(sa.get("v1", "Secret", dep.UPLOADPROXY_SERVING_SECRET, home))
        await forbidden(sa.create(_pvc("claim", user)))


async def test_every_authenticated_user_reads_the_config_and_nothing_else(kube_cluster: Harness,
                                                                          install: Install) -> None:
    kubeconfig = kube_cluster.kubeconfig_for("alice", ("system:authenticated",))
    async with await connect(kubeconfig, kinds=install_kinds()) as alice:
        await alice.list(CDI_API, "CDIConfig")
        await alice.list(CDI_API, "StorageProfile")
        await forbidden(alice.list(CDI_API, "DataVolume"))


async def test_a_refusal_is_the_api_servers_one_line(kube_cluster: Harness, install: Install,
                                                    kube_namespace: str) -> None:
    kubeconfig = service_account(kube_cluster, install.namespace, dep.UPLOADPROXY_SA)
    async with await connect(kubeconfig, kinds=install_kinds()) as sa:
        refusal = await forbidden(sa.get("v1", "Secret", "token", kube_namespace))
    user = f"system:serviceaccount:{install.namespace}:{dep.UPLOADPROXY_SA}"
    assert refusal.message == (f'secrets "token" is forbidden: User "{user}" cannot get resource "secrets" '
                               f'in API group "" in the namespace "{kube_namespace}"')
    assert refusal.code == 403 and not refusal.retryable
    assert _one_line(refusal.message) == refusal.message  # `cdi` prints it as `error: <message>` unchanged


def test_kubectl_applies_what_cdi_manifests_prints(kube_cluster: Harness, install: Install, tmp_path: Path) -> None:
    """The README's `cdi manifests | kubectl apply --server-side -f -`, as a server-side dry run over the install."""
    printed = io.StringIO()
    assert run_manifests(install.namespace, IMAGE, tmp_path / "pki", printed) == 0
    result = kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                                  input=printed.getvalue(), check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(install.documents) and all("serverside-applied (server dry run)" in line for line in lines)
