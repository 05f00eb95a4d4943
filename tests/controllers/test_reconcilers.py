"""The import controllers against a cluster backend, reconciled step by step, with the kubelet's and
the provisioner's parts played by the test: what each controller writes is what a user (or the next
controller) reads."""

from __future__ import annotations

from typing import Any

from cdi.cluster.protocol import Cluster
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers import cdiconfig, storageprofile
from cdi.controllers.datavolume.controller import IMPORT_KIND, DataVolumeReconciler
from cdi.controllers.importpod.controller import ImportPodReconciler
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock

DV_API = "cdi.kubevirt.io/v1beta1"
KEY = Key("default", "fedora")


class NoProgress:
    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        return 42.0


async def setup_storage(cluster: Cluster, clock: FixedClock, mode: str = "Immediate") -> None:
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "pycdi.local/hostpath",
                          "volumeBindingMode": mode, "metadata": {"name": "local", "annotations": {
                              ann.ANN_DEFAULT_STORAGE_CLASS: "true"}}})
    await storageprofile.StorageProfileReconciler(cluster, clock).reconcile(Key("", "local"))
    await cdiconfig.ensure_config(cluster)
    await cdiconfig.CDIConfigReconciler(cluster).reconcile(Key("", "config"))


async def create_dv(cluster: Cluster, source: dict[str, Any] | None = None) -> None:
    await cluster.create({"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": "fedora", "namespace": "default",
                                                                                   "annotations": {ann.ANN_POD_NETWORK: "net"}},
                          "spec": {"source": source or {"http": {"url": "https://h/disk.qcow2"}},
                                   "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})


async def bind(cluster: Cluster) -> None:
    pvc = await cluster.get("v1", "PersistentVolumeClaim", "fedora", "default")
    await cluster.patch_status("v1", "PersistentVolumeClaim", "fedora", {"status": {"phase": "Bound"}}, "default")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1138166334"


async def set_container(cluster: Cluster, phase: str, state: dict[str, Any], *, restarts: int = 0,
                        last: dict[str, Any] | None = None, name: str = "importer-fedora") -> None:
    status: dict[str, Any] = {"name": "importer", "state": state, "restartCount": restarts}
    if last:
        status["lastState"] = {"terminated": last}
    await cluster.patch_status("v1", "Pod", name, {"status": {"phase": phase, "podIP": "127.1.0.9",
                                                              "containerStatuses": [status]}}, "default")


async def dv_status(cluster: Cluster) -> dict[str, Any]:
    return (await cluster.get(DV_API, "DataVolume", "fedora", "default")).get("status") or {}


async def step(dvs: DataVolumeReconciler, pods: ImportPodReconciler, times: int = 2) -> None:
    for _ in range(times):
        await dvs.reconcile(KEY)
        await pods.reconcile(KEY)
        await dvs.reconcile(KEY)


async def scheduled_import(cluster: Cluster, clock: FixedClock, source: dict[str, Any] | None = None
                           ) -> tuple[DataVolumeReconciler, ImportPodReconciler]:
    """A DataVolume whose claim is bound and whose importer pod is made but not started, as the
    controllers leave it; returns them."""
    await setup_storage(cluster, clock)
    await create_dv(cluster, source)
    dvs, pods = DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()), ImportPodReconciler(cluster, clock)
    await step(dvs, pods, 1)
    await bind(cluster)
    await step(dvs, pods)
    return dvs, pods


async def test_import_flow_to_success(cluster: Cluster, clock: FixedClock) -> None:
    await setup_storage(cluster, clock)
    await create_dv(cluster)
    dvs, pods = DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()), ImportPodReconciler(cluster, clock)
    await step(dvs, pods, 1)
    assert (await dv_status(cluster))["phase"] == "Pending"
    await bind(cluster)
    await step(dvs, pods)
    pod = await cluster.get("v1", "Pod", "importer-fedora", "default")
    assert pod["metadata"]["annotations"][ann.ANN_POD_NETWORK] == "net"  # DV annotations reach the importer pod
    assert (await dv_status(cluster))["phase"] == "ImportScheduled"
    await set_container(cluster, "Running", {"running": {"startedAt": "2026-11-21T06:00:00Z"}})
    await step(dvs, pods)
    status = await dv_status(cluster)
    assert (status["phase"], status["progress"]) == ("ImportInProgress", "42.00%")
    done = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=False)
    await set_container(cluster, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed",
                                                              "message": done.to_json()}})
    await step(dvs, pods)
    status = await dv_status(cluster)
    assert (status["phase"], status["progress"]) == ("Succeeded", "100.0%")
    assert [c["status"] for c in status["conditions"]] == ["True", "True", "False"]
    assert not (await cluster.list("v1", "Pod", "default")).items  # the importer pod is cleaned up
    reasons = {e["reason"] for e in (await cluster.list("v1", "Event", "default")).items}
    assert {"Bound", "ImportScheduled", "ImportInProgress", "ImportSucceeded"} <= reasons


async def test_the_claim_event_not_the_creating_reconcile_writes_the_first_status(cluster: Cluster,
                                                                                  clock: FixedClock) -> None:
    """The reconcile that makes the claim writes no status: the claim's ADDED event wakes the DataVolume
    again, and that reconcile writes what the claim is by then; a claim bound in between is never shown
    Pending (one status write fewer), an unbound one is."""
    await setup_storage(cluster, clock)
    await create_dv(cluster)
    dvs = DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress())
    await dvs.reconcile(KEY)
    assert await cluster.get("v1", "PersistentVolumeClaim", "fedora", "default")
    assert await dv_status(cluster) == {}
    await bind(cluster)
    await dvs.reconcile(KEY)
    status = await dv_status(cluster)
    assert (status["phase"], status["claimName"]) == ("PVCBound", "fedora")


async def test_scratch_required_brings_a_scratch_claim(cluster: Cluster, clock: FixedClock) -> None:
    dvs, pods = await scheduled_import(cluster, clock)
    scratch = TerminationMessage("Import Complete", scratch_space_required=True, preallocation_applied=False)
    await set_container(cluster, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed",
                                                              "message": scratch.to_json()}})
    await step(dvs, pods)
    pod = await cluster.get("v1", "Pod", "importer-fedora", "default")
    claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]}
    assert "fedora-scratch" in claims
    scratch_pvc = await cluster.get("v1", "PersistentVolumeClaim", "fedora-scratch", "default")
    assert scratch_pvc["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    assert (await dv_status(cluster))["phase"] != "Succeeded"


async def test_fatal_failure_is_not_retried(cluster: Cluster, clock: FixedClock) -> None:
    dvs, pods = await scheduled_import(cluster, clock)
    unsafe = TerminationMessage("Unable to process data: Image is invalid because it has a backing file base.raw",
                                reason="UnsafeImage", retryable=False)
    await set_container(cluster, "Running", {"terminated": {"exitCode": 1, "reason": "Error", "message": unsafe.to_json()}})
    await step(dvs, pods, 3)
    status = await dv_status(cluster)
    assert status["phase"] == "Failed"
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert (running["reason"], running["message"]) == ("UnsafeImage", unsafe.message)
    assert not (await cluster.list("v1", "Pod", "default")).items  # not recreated


async def test_wait_for_first_consumer(cluster: Cluster, clock: FixedClock) -> None:
    await setup_storage(cluster, clock, mode="WaitForFirstConsumer")
    await create_dv(cluster)
    dvs, pods = DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()), ImportPodReconciler(cluster, clock)
    await step(dvs, pods)
    assert (await dv_status(cluster))["phase"] == "WaitForFirstConsumer"
    assert not (await cluster.list("v1", "Pod", "default")).items
    await cluster.patch("v1", "PersistentVolumeClaim", "fedora",
                        {"metadata": {"annotations": {ann.ANN_IMMEDIATE_BINDING: "true"}}}, "default")
    await step(dvs, pods)
    assert (await cluster.list("v1", "Pod", "default")).items  # the importer is the first consumer


async def test_claim_that_cannot_be_rendered_is_reported(cluster: Cluster, clock: FixedClock) -> None:
    await cdiconfig.ensure_config(cluster)
    await create_dv(cluster)
    dvs = DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress())
    await dvs.reconcile(KEY)
    status = await dv_status(cluster)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Pending", "ErrClaimNotValid")
    assert "no storageClass to choose profile" in ready["message"]


async def test_image_labels_reach_the_claim_and_instancetype_defaults_the_datavolume(
        cluster: Cluster, clock: FixedClock) -> None:
    """A registry image's env-declared labels (in the termination message) are added to the PVC where it
    has no such label yet; the default instance type/preference ones are also copied onto the DataVolume."""
    dvs, pods = await scheduled_import(cluster, clock, {"registry": {"url": "docker://example.com/disks/fedora:41"}})
    await cluster.patch("v1", "PersistentVolumeClaim", "fedora", {"metadata": {"labels": {
        ann.LABEL_DEFAULT_PREFERENCE: "users-choice"}}}, "default")
    labels = {ann.LABEL_DEFAULT_INSTANCETYPE: "u1.medium", ann.LABEL_DEFAULT_PREFERENCE: "fedora",
              "example.com/build": "41.1"}
    done = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=False,
                              labels=labels)
    await set_container(cluster, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed",
                                                              "message": done.to_json()}})
    await step(dvs, pods)
    pvc = await cluster.get("v1", "PersistentVolumeClaim", "fedora", "default")
    assert {k: pvc["metadata"]["labels"].get(k) for k in labels} == {
        ann.LABEL_DEFAULT_INSTANCETYPE: "u1.medium", ann.LABEL_DEFAULT_PREFERENCE: "users-choice",
        "example.com/build": "41.1"}
    dv = await cluster.get(DV_API, "DataVolume", "fedora", "default")
    assert dv["metadata"]["labels"] == {ann.LABEL_DEFAULT_INSTANCETYPE: "u1.medium",
                                        ann.LABEL_DEFAULT_PREFERENCE: "users-choice"}
    assert (await dv_status(cluster))["phase"] == "Succeeded"


async def _importer_succeeded(cluster: Cluster, clock: FixedClock, claim_notes: dict[str, str]) -> ImportPodReconciler:
    """A DataVolume whose importer pod just succeeded, with `claim_notes` on its claim; no reconcile has seen
    the success yet."""
    _, pods = await scheduled_import(cluster, clock)
    if claim_notes:
        await cluster.patch("v1", "PersistentVolumeClaim", "fedora", {"metadata": {"annotations": claim_notes}},
                            "default")
    done = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=False)
    await set_container(cluster, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed",
                                                              "message": done.to_json()}})
    return pods


async def test_the_finished_importer_goes_on_the_next_look_even_from_a_restarted_controller(
        cluster: Cluster, clock: FixedClock) -> None:
    """The reconcile that sees the pod succeed writes the success on the claim and nothing else; the next
    one (the claim's update wakes it), here a new controller's as after a crash between the two, deletes
    the pod."""
    pods = await _importer_succeeded(cluster, clock, {})
    await pods.reconcile(KEY)
    pvc = await cluster.get("v1", "PersistentVolumeClaim", "fedora", "default")
    assert pvc["metadata"]["annotations"][ann.ANN_POD_PHASE] == "Succeeded"
    assert await cluster.get("v1", "Pod", "importer-fedora", "default")
    await ImportPodReconciler(cluster, clock).reconcile(KEY)
    assert not (await cluster.list("v1", "Pod", "default")).items


async def test_a_finished_importer_the_claim_asks_to_keep_stays(cluster: Cluster, clock: FixedClock) -> None:
    pods = await _importer_succeeded(cluster, clock, {ann.ANN_POD_RETAIN_AFTER_COMPLETION: "true"})
    for _ in range(3):
        await pods.reconcile(KEY)
    pvc = await cluster.get("v1", "PersistentVolumeClaim", "fedora", "default")
    assert pvc["metadata"]["annotations"][ann.ANN_POD_PHASE] == "Succeeded"
    pod = await cluster.get("v1", "Pod", "importer-fedora", "default")
    assert pod["status"]["phase"] == "Succeeded" and not pod["metadata"].get("deletionTimestamp")
