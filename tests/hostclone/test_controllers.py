"""The upload controller (clone-target mode) and the clone source controller against both cluster backends,
reconciled step by step with the kubelet's part played by the test: what they create, what they write
on the target PVC, the events a user sees, and the clean-up after success, failure or deletion."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers.hostclone.controller import CloneSourceReconciler
from cdi.controllers.upload.controller import UploadReconciler
from cdi.controllers.upload.credentials import decode
from cdi.runtime.types import Key, Result
from tests.hostclone.conftest import SteppingClock

NS = "default"
TARGET = Key(NS, "target")
UPLOAD_POD = "cdi-upload-target"


class Scraper:
    def __init__(self) -> None:
        self.value: float | None = 45.2678
        self.calls = 0

    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        self.calls += 1
        return self.value


def claim(name: str, size: str = "1Gi", **notes: str) -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS, "annotations": notes},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": size}}}}


async def bound(cluster: Cluster, name: str, size: str = "1Gi") -> None:
    await cluster.patch_status("v1", "PersistentVolumeClaim", name,
                               {"status": {"phase": "Bound", "capacity": {"storage": size}}}, NS)


async def pod_status(cluster: Cluster, name: str, phase: str, state: dict[str, Any], ip: str) -> None:
    await cluster.patch_status("v1", "Pod", name, {"status": {"phase": phase, "podIP": ip, "containerStatuses": [
        {"name": "c", "state": state, "ready": "running" in state, "restartCount": 0}]}}, NS)


async def get(cluster: Cluster, kind: str, name: str) -> Object | None:
    try:
        return await cluster.get("v1", kind, name, NS)
    except NotFound:
        return None


async def notes(cluster: Cluster) -> dict[str, str]:
    return dict((await cluster.get("v1", "PersistentVolumeClaim", "target", NS))["metadata"].get("annotations") or {})


async def events(cluster: Cluster) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in (await cluster.list("v1", "Event", NS)).items]


async def started(cluster: Cluster, clock: SteppingClock) -> tuple[UploadReconciler, CloneSourceReconciler, Scraper, str]:
    """A source, a clone target, its upload pod running: until the source pod exists."""
    await cluster.create(claim("source"))
    await bound(cluster, "source")
    await cluster.create(claim("target", **{ann.ANN_CLONE_REQUEST: f"{NS}/source"}))
    await bound(cluster, "target")
    uploads, scraper = UploadReconciler(cluster, clock, namespace=NS), Scraper()
    clones = CloneSourceReconciler(cluster, clock, scraper, image="img", namespace=NS)
    await uploads.reconcile(TARGET)
    await pod_status(cluster, UPLOAD_POD, "Running", {"running": {}}, "127.1.0.5")
    await uploads.reconcile(TARGET)
    assert (await notes(cluster))[ann.ANN_POD_READY] == "true"
    await clones.reconcile(TARGET)
    uid = (await cluster.get("v1", "PersistentVolumeClaim", "target", NS))["metadata"]["uid"]
    return uploads, clones, scraper, f"{uid}-source-pod"


async def test_host_assisted_clone_to_success(cluster: Cluster, stepping_clock: SteppingClock) -> None:
    await cluster.create(claim("source"))
    await bound(cluster, "source")
    await cluster.create(claim("target", **{ann.ANN_CLONE_REQUEST: f"{NS}/source"}))
    await bound(cluster, "target")
    uploads = UploadReconciler(cluster, stepping_clock, namespace=NS)
    scraper = Scraper()
    clones = CloneSourceReconciler(cluster, stepping_clock, scraper, image="img", namespace=NS)
    await uploads.reconcile(TARGET)
    upload = await cluster.get("v1", "Pod", UPLOAD_POD, NS)
    env = {e["name"]: e.get("value") for e in upload["spec"]["containers"][0]["env"]}
    assert env["CLIENT_NAME"] == "default/source-default/target"
    assert "CDI_SCRATCH_PATH" not in env and await get(cluster, "PersistentVolumeClaim", "target-scratch") is None
    assert await clones.reconcile(TARGET) == Result()  # upload server not ready: nothing yet
    assert [p["metadata"]["name"] for p in (await cluster.list("v1", "Pod", NS)).items] == [UPLOAD_POD]

    await pod_status(cluster, UPLOAD_POD, "Running", {"running": {}}, "127.1.0.5")
    await uploads.reconcile(TARGET)
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": NS},
                          "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [
                              {"name": "v", "mountPath": "/d"}]}],
                                   "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "source"}}]}})
    await pod_status(cluster, "app", "Running", {"running": {}}, "127.1.0.6")
    assert await clones.reconcile(TARGET) == Result(requeue_after=2.0)
    assert ("CloneSourceInUse", "pod default/app using PersistentVolumeClaim source") in await events(cluster)
    await cluster.delete("v1", "Pod", "app", NS)
    await clones.reconcile(TARGET)

    target = await cluster.get("v1", "PersistentVolumeClaim", "target", NS)
    pod_name = f"{target['metadata']['uid']}-source-pod"
    assert target["metadata"]["annotations"][ann.ANN_CLONE_SOURCE_POD] == pod_name
    assert ann.FINALIZER_CLONE_SOURCE in target["metadata"]["finalizers"]
    source_pod = await cluster.get("v1", "Pod", pod_name, NS)
    assert source_pod["metadata"]["labels"][ann.LABEL_COMPONENT] == "cdi-clone-source"
    secret = decode(await cluster.get("v1", "Secret", pod_name, NS))
    cert = x509.load_pem_x509_certificate(secret["tls.crt"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "default/source-default/target"
    ca = decode(await cluster.get("v1", "Secret", "cdi-uploadserver-ca", NS))
    assert cert.issuer == x509.load_pem_x509_certificate(ca["tls.crt"]).subject

    await pod_status(cluster, pod_name, "Running", {"running": {}}, "127.1.0.8")
    await clones.reconcile(TARGET)
    assert (await notes(cluster))[ann.ANN_POPULATOR_PROGRESS] == "45.27%"
    scraper.value = 80.0
    await clones.reconcile(TARGET)  # within 2 s of the last scrape: not scraped again
    assert (scraper.calls, (await notes(cluster))[ann.ANN_POPULATOR_PROGRESS]) == (1, "45.27%")
    stepping_clock.advance(2.5)
    await clones.reconcile(TARGET)
    assert (scraper.calls, (await notes(cluster))[ann.ANN_POPULATOR_PROGRESS]) == (2, "80.00%")

    done = TerminationMessage("Clone Complete", preallocation_applied=False).to_json()
    await pod_status(cluster, UPLOAD_POD, "Succeeded", {"terminated": {"exitCode": 0, "message": done}}, "127.1.0.5")
    await uploads.reconcile(TARGET)
    await clones.reconcile(TARGET)
    final = await notes(cluster)
    assert (final[ann.ANN_POD_PHASE], final[ann.ANN_CLONE_OF], final[ann.ANN_POPULATOR_PROGRESS]) == (
        "Succeeded", "true", "100.00%")
    assert ("CloneSucceeded", "Clone Complete") in await events(cluster)
    assert await get(cluster, "Pod", pod_name) is None and await get(cluster, "Secret", pod_name) is None
    target = await cluster.get("v1", "PersistentVolumeClaim", "target", NS)
    assert ann.FINALIZER_CLONE_SOURCE not in (target["metadata"].get("finalizers") or [])
    await uploads.reconcile(TARGET)
    assert await get(cluster, "Pod", UPLOAD_POD) is None  # the upload controller cleans its side


async def test_a_source_larger_than_the_target_is_refused(cluster: Cluster, stepping_clock: SteppingClock) -> None:
    await cluster.create(claim("source", size="2Gi"))
    await bound(cluster, "source", "2Gi")
    await cluster.create(claim("target", **{ann.ANN_CLONE_REQUEST: f"{NS}/source"}))
    uploads = UploadReconciler(cluster, stepping_clock, namespace=NS)
    assert await uploads.reconcile(TARGET) == Result(requeue_after=30.0)
    assert not (await cluster.list("v1", "Pod", NS)).items
    assert ("ErrIncompatiblePVC", "target resources requests storage size is smaller than the source 1073741824 < "
                                  "2147483648") in await events(cluster)


async def test_deleting_the_target_removes_the_source_pod(cluster: Cluster, stepping_clock: SteppingClock) -> None:
    _, clones, _, pod_name = await started(cluster, stepping_clock)
    assert await get(cluster, "Pod", pod_name) is not None
    await cluster.delete("v1", "PersistentVolumeClaim", "target", NS)
    await clones.reconcile(TARGET)
    assert await get(cluster, "Secret", pod_name) is None
    source_pod = await get(cluster, "Pod", pod_name)
    assert source_pod is None or source_pod["metadata"].get("deletionTimestamp")
    target = await get(cluster, "PersistentVolumeClaim", "target")
    assert target is None or ann.FINALIZER_CLONE_SOURCE not in (target["metadata"].get("finalizers") or [])


async def test_a_fatal_source_failure_fails_the_target(cluster: Cluster, stepping_clock: SteppingClock) -> None:
    uploads, clones, _, pod_name = await started(cluster, stepping_clock)
    failure = TerminationMessage("Unable to process data: the clone source has no disk image", reason="InvalidConfiguration",
                                 retryable=False).to_json()
    await pod_status(cluster, pod_name, "Failed", {"terminated": {"exitCode": 1, "message": failure}}, "127.1.0.8")
    await clones.reconcile(TARGET)
    final = await notes(cluster)
    assert (final[ann.ANN_POD_PHASE], final[ann.ANN_IMPORT_FATAL_ERROR]) == ("Failed", "true")
    assert final[ann.ANN_RUNNING_CONDITION_REASON] == "InvalidConfiguration"
    assert ("InvalidConfiguration", "Unable to process data: the clone source has no disk image") in await events(cluster)
    assert await get(cluster, "Secret", pod_name) is None
    await uploads.reconcile(TARGET)  # the upload pod is gone and, the failure being fatal, not recreated
    upload = await get(cluster, "Pod", UPLOAD_POD)
    assert upload is None or upload["metadata"].get("deletionTimestamp")


async def test_cross_namespace_clone_needs_authorization(cluster: Cluster, stepping_clock: SteppingClock) -> None:
    await cluster.create(claim("target", **{ann.ANN_CLONE_REQUEST: "golden/source", ann.ANN_POD_READY: "true"}))
    clones = CloneSourceReconciler(cluster, stepping_clock, Scraper(), namespace=NS)
    await clones.reconcile(TARGET)
    reasons = [r for r, _ in await events(cluster)]
    assert reasons == ["ErrCloneNotAuthorized"]
    assert not [p for p in (await cluster.list("v1", "Pod", None)).items
                if p["metadata"]["name"].endswith("-source-pod")]
    allowed = CloneSourceReconciler(cluster, stepping_clock, Scraper(), namespace=NS, authorize=lambda _pvc: None)
    assert await allowed.reconcile(TARGET) == Result(requeue_after=5.0)  # authorized: now waits for the source
