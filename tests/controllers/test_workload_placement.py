"""CDI.spec.workload on both backends: with a CDI resource asking for a node placement, the importer pod of an
import DataVolume and the upload server pod of an upload DataVolume carry its nodeSelector, affinity and
tolerations; a change of spec.workload reaches the pods created afterwards and leaves existing ones alone. In
embedded mode the pod runner then schedules the importer only where the placement matches the local Node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.datavolume.controller import IMPORT_KIND, UPLOAD_KIND, DataVolumeReconciler
from cdi.controllers.importpod.controller import ImportPodReconciler
from cdi.controllers.upload.controller import UploadReconciler
from cdi.embedded import EmbeddedCluster
from cdi.embedded.nodeagent import register_node
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock
from tests.controllers.test_reconcilers import DV_API, NoProgress, setup_storage

NS = "default"
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "cdi", "effect": "NoSchedule"}
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}]}}}
WORKLOAD = {"nodeSelector": {"role": "cdi-worker"}, "tolerations": [TOLERATION], "affinity": AFFINITY}


@pytest.fixture
async def cdi_resource(cluster: Cluster) -> AsyncIterator[Object]:
    created = await cluster.create({"apiVersion": DV_API, "kind": "CDI", "metadata": {"name": "cdi-placement"},
                                    "spec": {"workload": WORKLOAD}})
    try:
        yield created
    finally:
        try:
            await cluster.delete(DV_API, "CDI", "cdi-placement")
        except NotFound:
            pass


async def data_volume(cluster: Cluster, name: str, source: dict[str, Any]) -> None:
    await cluster.create({"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": NS},
                          "spec": {"source": source, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})


async def pod_for(cluster: Cluster, dvs: DataVolumeReconciler, workers: ImportPodReconciler | UploadReconciler,
                  name: str, pod_name: str) -> Object:
    """Reconcile the DataVolume into its claim, bind it as the provisioner would, and have the worker made."""
    key = Key(NS, name)
    await dvs.reconcile(key)
    await cluster.patch_status("v1", "PersistentVolumeClaim", name, {"status": {"phase": "Bound"}}, NS)
    await workers.reconcile(key)
    return await cluster.get("v1", "Pod", pod_name, NS)


# A real API server's DefaultTolerationSeconds admission adds these to every pod that does not tolerate them.
ADMITTED = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def placement(pod: Object) -> dict[str, Any]:
    found = {k: pod["spec"].get(k) for k in ("nodeSelector", "tolerations", "affinity")}
    found["tolerations"] = [t for t in found["tolerations"] or [] if t.get("key") not in ADMITTED] or None
    return found


async def test_worker_pods_carry_the_workload_placement(cluster: Cluster, clock: FixedClock,
                                                        cdi_resource: Object) -> None:
    await setup_storage(cluster, clock)
    await data_volume(cluster, "fedora", {"http": {"url": "https://h/disk.qcow2"}})
    importer = await pod_for(cluster, DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()),
                             ImportPodReconciler(cluster, clock), "fedora", "importer-fedora")
    assert placement(importer) == WORKLOAD

    # A new placement: pods created from now on get it, the running importer keeps what it was created with.
    moved = {"nodeSelector": {"role": "uploads"}, "tolerations": [{"operator": "Exists"}], "affinity": None}
    await cluster.patch(DV_API, "CDI", "cdi-placement", {"spec": {"workload": moved}})
    await data_volume(cluster, "upload-disk", {"upload": {}})
    upload = await pod_for(cluster, DataVolumeReconciler(cluster, clock, UPLOAD_KIND),
                           UploadReconciler(cluster, clock, namespace=NS), "upload-disk", "cdi-upload-upload-disk")
    assert placement(upload) == {"nodeSelector": {"role": "uploads"}, "tolerations": [{"operator": "Exists"}],
                                 "affinity": None}
    assert placement(await cluster.get("v1", "Pod", "importer-fedora", NS)) == WORKLOAD


async def test_no_cdi_resource_no_placement(cluster: Cluster, clock: FixedClock) -> None:
    await setup_storage(cluster, clock)
    await data_volume(cluster, "fedora", {"http": {"url": "https://h/disk.qcow2"}})
    importer = await pod_for(cluster, DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()),
                             ImportPodReconciler(cluster, clock), "fedora", "importer-fedora")
    assert placement(importer) == {"nodeSelector": None, "tolerations": None, "affinity": None}


@pytest.mark.parametrize(("selector", "scheduled"), [({"kubernetes.io/hostname": "pycdi-node"}, True),
                                                     ({"role": "cdi-worker"}, False)])
async def test_the_local_node_runs_an_importer_only_where_the_workload_allows(
        tmp_path: Path, clock: FixedClock, selector: dict[str, str], scheduled: bool) -> None:
    """Embedded mode end to end: the pod runner plays the scheduler for the importer the controller placed."""
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        await register_node(cluster, datetime.now(UTC))
        await cluster.create({"apiVersion": DV_API, "kind": "CDI", "metadata": {"name": "cdi"},
                              "spec": {"workload": {"nodeSelector": selector}}})
        await setup_storage(cluster, clock)
        await data_volume(cluster, "fedora", {"http": {"url": "https://h/disk.qcow2"}})
        await pod_for(cluster, DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()),
                      ImportPodReconciler(cluster, clock), "fedora", "importer-fedora")
        runner = PodRunner(cluster, tmp_path / "node", retry_after=0.1)
        try:
            await runner.reconcile(Key(NS, "importer-fedora"))
        finally:
            await runner.close()
        pod = await cluster.get("v1", "Pod", "importer-fedora", NS)
        condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        events = {e["reason"]: e["message"] for e in (await cluster.list("v1", "Event", NS)).items
                  if e["involvedObject"]["name"] == "importer-fedora"}
        if scheduled:
            assert (pod["spec"].get("nodeName"), condition["status"]) == ("pycdi-node", "True")
            assert "FailedScheduling" not in events
        else:
            assert (pod["spec"].get("nodeName"), pod["status"]["phase"], condition["status"]) == (None, "Pending",
                                                                                                  "False")
            assert events["FailedScheduling"] == condition["message"] == \
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            await ImportPodReconciler(cluster, clock).reconcile(Key(NS, "fedora"))  # the claim shows it
            notes = (await cluster.get("v1", "PersistentVolumeClaim", "fedora", NS))["metadata"]["annotations"]
            assert (notes[ann.ANN_POD_PHASE], notes[ann.ANN_POD_SCHEDULABLE]) == ("Pending", "false")
