"""The CLI's everyday verbs on a real API server (`--kubeconfig FILE`), run as a user runs them: the `cdi`
executable, with a home directory that holds no embedded store (so nothing falls back to it).

A DataVolume goes through `apply` (created, then unchanged), `get` (table, `-o yaml`, `-o name`),
`describe`, `wait` (for a Ready condition this test writes, as a controller would) and `delete`;
`create` makes a ConfigMap from literals. A service account of the install with no rights on
DataVolumes (`cdi-uploadproxy`) is refused by RBAC, and the CLI says so on one line. Without
`--kubeconfig` the same commands still mean the embedded store, even with $KUBECONFIG set.
`cdi logs --kubeconfig` is tested with the pods `cdi node` runs, in `test_node_logs.py`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cdi.contracts import deployment as dep
from cdi.kube import connect
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import service_account_kubeconfig

pytestmark = pytest.mark.slow
DV_API = "cdi.kubevirt.io/v1beta1"


def _manifest(name: str, namespace: str) -> str:
    return yaml.safe_dump({
        "apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}})


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "CDI_HOME": str(home)}


def cdi(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("cdi")), *args], env=_env(home), input=input,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"  # never created: a command that opened the embedded store would fail or make it


async def test_everyday_verbs_on_a_cluster(kube_cluster: KubeCluster, kube_namespace: str, home: Path,
                                           tmp_path: Path) -> None:
    kubeconfig = str(kube_cluster.kubeconfig_path)
    on_cluster = ("--kubeconfig", kubeconfig, "-n", kube_namespace)
    manifest = tmp_path / "dv.yaml"
    manifest.write_text(_manifest("blank-disk", kube_namespace))

    applied = cdi(home, "apply", "-f", str(manifest), *on_cluster)
    assert (applied.returncode, applied.stdout, applied.stderr) == (
        0, "datavolume.cdi.kubevirt.io/blank-disk created\n", "")
    again = cdi(home, "apply", "-f", str(manifest), *on_cluster)
    assert again.stdout == "datavolume.cdi.kubevirt.io/blank-disk unchanged\n"

    table = cdi(home, "get", "dv", *on_cluster)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "PHASE"] and row.split()[0] == "blank-disk"
    document = yaml.safe_load(cdi(home, "get", "dv", "blank-disk", "-o", "yaml", *on_cluster).stdout)
    assert (document["kind"], document["metadata"]["name"], document["metadata"]["namespace"]) == (
        "DataVolume", "blank-disk", kube_namespace)
    assert document["spec"]["source"] == {"blank": {}}
    assert cdi(home, "get", "dv", "-o", "name", *on_cluster).stdout == "datavolume.cdi.kubevirt.io/blank-disk\n"

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    async with await connect(kube_cluster.kubeconfig_path) as cluster:
        for name, uid in (("about-it", document["metadata"]["uid"]), ("about-another", "another-uid")):
            await cluster.create({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": kube_namespace},
                "involvedObject": {"apiVersion": DV_API, "kind": "DataVolume", "name": "blank-disk",
                                   "namespace": kube_namespace, "uid": uid},
                "type": "Normal", "reason": "Tested", "message": f"event {name}", "source": {"component": "a-test"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1})
    described = cdi(home, "describe", "dv", "blank-disk", *on_cluster)
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert lines[0].split() == ["Name:", "blank-disk"] and lines[1].split() == ["Namespace:", kube_namespace]
    assert ["UID:", document["metadata"]["uid"]] in [line.split() for line in lines]
    assert lines[-4].split() == ["Events:"] and lines[-1].split()[:2] == ["Normal", "Tested"]
    assert lines[-1].split()[-3:] == ["a-test", "event", "about-it"]
    by_prefix = cdi(home, "describe", "dv", "blank", *on_cluster).stdout.splitlines()  # as kubectl, a prefix
    assert by_prefix[:-1] == lines[:-1] and by_prefix[-1].split()[-3:] == lines[-1].split()[-3:]  # the age moves

    await _wait_for_a_condition(home, kube_cluster, kube_namespace, on_cluster)

    created = cdi(home, "create", "configmap", "settings", "--from-literal", "mode=fast", *on_cluster)
    assert created.stdout == "configmap/settings created\n", created.stderr
    assert cdi(home, "get", "cm", "settings", "-o", "jsonpath={.data.mode}", *on_cluster).stdout == "fast"

    deleted = cdi(home, "delete", "dv", "blank-disk", *on_cluster)
    assert (deleted.returncode, deleted.stdout) == (0, 'datavolume.cdi.kubevirt.io "blank-disk" deleted\n')
    gone = cdi(home, "get", "dv", "blank-disk", *on_cluster)
    assert (gone.returncode, gone.stderr) == (1, 'error: datavolumes.cdi.kubevirt.io "blank-disk" not found\n')
    assert not home.exists()


async def _wait_for_a_condition(home: Path, kube_cluster: KubeCluster, namespace: str,
                                on_cluster: tuple[str, ...]) -> None:
    """`cdi wait` blocks until the DataVolume is Ready, which this test then reports as its controller would."""
    waiting = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("cdi")), "wait", "dv/blank-disk", "--for=condition=Ready", "--timeout=60s",
        *on_cluster, env=_env(home), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(2)
        assert waiting.returncode is None, await waiting.communicate()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        async with await connect(kube_cluster.kubeconfig_path) as cluster:
            await cluster.patch_status(DV_API, "DataVolume", "blank-disk", {"status": {"phase": "Succeeded",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                "lastTransitionTime": now, "lastHeartbeatTime": now}]}}, namespace)
        out, err = (data.decode() for data in await asyncio.wait_for(waiting.communicate(), 60))
    finally:
        if waiting.returncode is None:
            waiting.kill()
            await waiting.communicate()
    assert (waiting.returncode, out, err) == (0, "datavolume.cdi.kubevirt.io/blank-disk condition met\n", "")


async def test_a_request_rbac_refuses_is_one_line(kube_cluster: KubeCluster, kube_namespace: str, home: Path,
                                                  tmp_path: Path) -> None:
    restricted = await asyncio.to_thread(service_account_kubeconfig, kube_cluster.kubeconfig_path, dep.NAMESPACE,
                                         dep.UPLOADPROXY_SA, tmp_path / "uploadproxy.kubeconfig")
    user = f'User "system:serviceaccount:{dep.NAMESPACE}:{dep.UPLOADPROXY_SA}"'
    listed = cdi(home, "get", "dv", "-n", kube_namespace, "--kubeconfig", str(restricted))
    assert listed.returncode == 1 and listed.stdout == ""
    assert listed.stderr.splitlines() == [
        f'error: datavolumes.cdi.kubevirt.io is forbidden: {user} cannot list resource "datavolumes" in API group '
        f'"cdi.kubevirt.io" in the namespace "{kube_namespace}"']
    manifest = tmp_path / "dv.yaml"
    manifest.write_text(_manifest("refused", kube_namespace))
    applied = cdi(home, "apply", "-f", str(manifest), "--kubeconfig", str(restricted))
    assert applied.returncode == 1 and len(applied.stderr.splitlines()) == 1, applied.stderr
    assert applied.stderr.startswith("error: datavolume.cdi.kubevirt.io/refused: ") and "forbidden" in applied.stderr
    deleted = cdi(home, "delete", "pvc", "anything", "-n", kube_namespace, "--kubeconfig", str(restricted))
    assert deleted.returncode == 1 and len(deleted.stderr.splitlines()) == 1, deleted.stderr
    assert not home.exists()


def test_without_the_flag_the_embedded_store_is_meant(kube_cluster: KubeCluster, home: Path) -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("cdi")), "get", "dv"], capture_output=True, text=True,
                            env={**_env(home), "KUBECONFIG": str(kube_cluster.kubeconfig_path)}, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: there is no object store in {home}")


async def test_objects_named_need_only_get(kube_cluster: KubeCluster, kube_namespace: str, home: Path,
                                           tmp_path: Path) -> None:
    """A Role granting `get` on one DataVolume by resourceNames (never list) lets `cdi get dv NAME` read it, as
    kubectl's; listing them all is refused on one line."""
    manifest = tmp_path / "dv.yaml"
    manifest.write_text(_manifest("mine", kube_namespace))
    assert cdi(home, "apply", "-f", str(manifest), "--kubeconfig", str(kube_cluster.kubeconfig_path)).returncode == 0
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube_namespace}"
    kube_cluster.request("POST", f"{rbac}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "get-mine"},
        "rules": [{"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"], "resourceNames": ["mine"],
                   "verbs": ["get"]}]})
    kube_cluster.request("POST", f"{rbac}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "get-mine"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "get-mine"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader"}]})
    reader = ("--kubeconfig", str(kube_cluster.kubeconfig_for("reader")), "-n", kube_namespace)
    named = cdi(home, "get", "dv", "mine", "-o", "name", *reader)
    assert (named.returncode, named.stdout, named.stderr) == (0, "datavolume.cdi.kubevirt.io/mine\n", "")
    listed = cdi(home, "get", "dv", *reader)
    assert listed.returncode == 1 and listed.stderr.splitlines() == [
        'error: datavolumes.cdi.kubevirt.io is forbidden: User "reader" cannot list resource "datavolumes" in API '
        f'group "cdi.kubevirt.io" in the namespace "{kube_namespace}"']
