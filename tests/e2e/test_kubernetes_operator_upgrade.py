"""`cdi operator` upgrades and refuses downgrades, on a real API server.

Its own control plane, as `test_kubernetes_operator.py` (the CR comes to own CDI's CRDs). The harness runs
neither kubelet nor the Deployment controller, so the test plays them: it writes the Deployments' status
(replicas and readyReplicas) through the status subresource, as the Deployment controller would once the
pods are ready. With that, the first operator (v1.0.0) reaches Deployed; an object controlled by the CR and
labelled with an older createVersion stands for what an older release installed. The v1.1.0 operator then
starts an upgrade (phase Upgrading while a Deployment is not ready or still rolling out the new image, the
stale object kept), and once all are ready deletes the stale object, keeps each object's createVersion, stamps updateVersion v1.1.0 and sets
observedVersion. A v1.0.0 operator started afterwards refuses to reconcile (upstream's downgrade message).
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.install.objects import install_kinds
from cdi.kube import connect
from tests.e2e.test_kubernetes_operator import eventually
from tests.support.backends import install_crds
from tests.support.daemon import CDI, running
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, free_port, kube_binaries

pytestmark = pytest.mark.slow
CDI_API = "cdi.kubevirt.io/v1beta1"
NAMESPACE = "cdi"
DEPLOYMENTS = ("cdi-deployment", "cdi-apiserver", "cdi-uploadproxy")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as unavailable:
        pytest.skip(str(unavailable))
    with KubeCluster(binaries, tmp_path_factory.mktemp("kube-operator-upgrade"),
                     controllers=("garbage-collector-controller", "namespace-controller",
                                  "serviceaccount-controller")) as cluster:
        install_crds(cluster)
        cluster.request("POST", "/api/v1/namespaces",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield cluster


def operator(control_plane: KubeCluster, work: Path, version: str) -> Any:
    port, log = free_port(), work / f"operator-{version}.log"

    def healthy(_process: object) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)

    argv = [CDI, "operator", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", NAMESPACE,
            "--image", f"registry.example/pycdi:{version}", "--health-port", str(port), "--no-leader-elect"]
    return running(f"cdi operator {version}", argv, log, healthy, env={**os.environ, "OPERATOR_VERSION": version})


async def set_ready(cluster: Cluster, name: str, ready: bool) -> None:
    """What the Deployment controller writes once the pods are (or are no longer) ready."""
    deployment = await cluster.get("apps/v1", "Deployment", name, NAMESPACE)
    wanted = deployment["spec"].get("replicas", 1)
    await cluster.patch_status("apps/v1", "Deployment", name, {"status": {
        "observedGeneration": deployment["metadata"]["generation"], "replicas": wanted,
        "readyReplicas": wanted if ready else 0, "availableReplicas": wanted if ready else 0,
        "updatedReplicas": wanted}}, NAMESPACE)


async def cdi_with(cluster: Cluster, **wanted: str) -> dict[str, Any] | None:
    cdi = await cluster.get(CDI_API, "CDI", "cdi")
    status = cdi.get("status") or {}
    return cdi if all(status.get(k) == v for k, v in wanted.items()) else None


def degraded(cdi: dict[str, Any]) -> tuple[str, str | None, str | None]:
    found = next(c for c in cdi["status"]["conditions"] if c["type"] == "Degraded")
    return found["status"], found.get("reason"), found.get("message")


async def test_upgrade_deletes_stale_objects_and_a_downgrade_is_refused(control_plane: KubeCluster,
                                                                        tmp_path: Path) -> None:
    async with await connect(control_plane.kubeconfig_path, kinds=install_kinds()) as cluster:
        with operator(control_plane, tmp_path, "v1.0.0"):
            cr = await cluster.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": "cdi"},
                                       "spec": {}})
            for name in DEPLOYMENTS:
                await eventually(f"Deployment {name}",
                                 lambda name=name: cluster.get("apps/v1", "Deployment", name, NAMESPACE))
                await set_ready(cluster, name, True)
            cdi = await eventually("Deployed at v1.0.0",
                                   lambda: cdi_with(cluster, phase="Deployed", observedVersion="v1.0.0"))
            available = next(c for c in cdi["status"]["conditions"] if c["type"] == "Available")
            assert (available["status"], available["reason"]) == ("True", "DeployCompleted")
            await cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "cdi-obsolete", "namespace": NAMESPACE,
                "labels": {"operator.cdi.kubevirt.io/createVersion": "v0.9.0"},
                "ownerReferences": [{"apiVersion": CDI_API, "kind": "CDI", "name": "cdi",
                                     "uid": cr["metadata"]["uid"], "controller": True}]}})
            await set_ready(cluster, "cdi-uploadproxy", False)

            async def degraded_not_ready() -> bool:
                cdi = await cluster.get(CDI_API, "CDI", "cdi")
                return degraded(cdi) == ("True", "ComponentsNotReady", "Not ready: cdi-uploadproxy")

            await eventually("Degraded while the upload proxy is not ready", degraded_not_ready)

        with operator(control_plane, tmp_path, "v1.1.0"):
            cdi = await eventually("Upgrading", lambda: cdi_with(cluster, phase="Upgrading", targetVersion="v1.1.0"))
            assert cdi["status"]["observedVersion"] == "v1.0.0"
            assert degraded(cdi) == ("True", "UpgradeStarted", "Started upgrade to version v1.1.0")
            await asyncio.sleep(1)
            await cluster.get("v1", "ConfigMap", "cdi-obsolete", NAMESPACE)  # not before every component is ready
            # The new image rolls out: each Deployment's spec changed, so its old readiness does not count.
            for name in DEPLOYMENTS:
                deployment = await cluster.get("apps/v1", "Deployment", name, NAMESPACE)
                assert deployment["status"]["observedGeneration"] < deployment["metadata"]["generation"]
            await asyncio.sleep(1)
            assert (await cluster.get(CDI_API, "CDI", "cdi"))["status"]["phase"] == "Upgrading"
            for name in DEPLOYMENTS:
                await set_ready(cluster, name, True)
            await eventually("Deployed at v1.1.0", lambda: cdi_with(cluster, phase="Deployed",
                                                                    observedVersion="v1.1.0"))

            async def stale_gone() -> bool:
                try:
                    await cluster.get("v1", "ConfigMap", "cdi-obsolete", NAMESPACE)
                except NotFound:
                    return True
                return False

            await eventually("the stale ConfigMap deleted", stale_gone)
            labels = (await cluster.get("apps/v1", "Deployment", "cdi-deployment", NAMESPACE))["metadata"]["labels"]
            assert (labels["operator.cdi.kubevirt.io/createVersion"],
                    labels["operator.cdi.kubevirt.io/updateVersion"]) == ("v1.0.0", "v1.1.0")
            image = (await cluster.get("apps/v1", "Deployment", "cdi-deployment", NAMESPACE)
                     )["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == "registry.example/pycdi:v1.1.0"

        with operator(control_plane, tmp_path, "v1.0.0"):
            async def refused() -> dict[str, Any] | None:
                cdi = await cluster.get(CDI_API, "CDI", "cdi")
                return cdi if degraded(cdi)[1] == "DowngradeRefused" else None

            cdi = await eventually("the downgrade refused", refused)
            assert degraded(cdi) == ("True", "DowngradeRefused", "operator downgraded, will not reconcile")
            assert cdi["status"]["observedVersion"] == "v1.1.0"
            image = (await cluster.get("apps/v1", "Deployment", "cdi-deployment", NAMESPACE)
                     )["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == "registry.example/pycdi:v1.1.0"  # nothing of v1.0.0 was applied
