"""The clone controllers' pure parts as tables: the source controller's plan for each situation, who uses
a source read-write, the source pod and Secret, and the upload controller's compatibility check."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.controllers.config_view import ConfigView
from cdi.controllers.hostclone.plan import Act, Observation, Plan, plan, same_namespace_only
from cdi.controllers.hostclone.podspec import SourcePodInputs, source_pod, upload_url_host
from cdi.controllers.hostclone.usage import pods_using
from cdi.controllers.upload.clonetarget import clone_client_name, incompatibility
from cdi.runtime.types import DONE, Result

POD = "tuid-source-pod"


def pvc(name: str, *, notes: dict[str, str] | None = None, size: str = "1Gi", mode: str = "Filesystem",
        phase: str = "Bound", finalizers: tuple[str, ...] = (), deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"{name}-uid", "annotations": notes or {},
                            "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-21T06:00:00Z"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": {"volumeMode": mode, "storageClassName": "local", "resources": {"requests": {"storage": size}}},
            "status": {"phase": phase}}


def target(**notes: str) -> dict[str, Any]:
    return pvc("target", notes={ann.ANN_CLONE_REQUEST: "ns/source", ann.ANN_POD_READY: "true", **notes})


def pod(name: str, phase: str = "Running", ip: str = "127.1.0.7", **status: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "env": [{"name": cp.UPLOAD_URL,
                                                           "value": "https://127.1.0.5:8443/v1beta1/upload"}]}]},
            "status": {"phase": phase, "podIP": ip, **status}}


UPLOAD = pod("cdi-upload-target", ip="127.1.0.5")
SOURCE = pvc("source")


def test_a_ready_upload_server_and_an_idle_source_start_the_source_pod() -> None:
    decided = plan(Observation(target(), SOURCE, upload_pod=UPLOAD), POD)
    assert decided == Plan((Act.ADD_FINALIZER, Act.START_SOURCE), {ann.ANN_CLONE_SOURCE_POD: POD},
                           result=Result(requeue_after=2.0))


@pytest.mark.parametrize(("observation", "expected"), [
    (Observation(target(**{ann.ANN_POD_READY: "false"}), SOURCE, upload_pod=UPLOAD), Plan()),
    (Observation(target(), None, upload_pod=UPLOAD), Plan(result=Result(requeue_after=5.0))),
    (Observation(target(), pvc("source", phase="Pending"), upload_pod=UPLOAD), Plan(result=Result(requeue_after=5.0))),
    (Observation(target(), pvc("source", notes={ann.ANN_POD_PHASE: "Running"}), upload_pod=UPLOAD),
     Plan(result=Result(requeue_after=5.0))),  # still being imported: not populated yet
    (Observation(target(), SOURCE, upload_pod=UPLOAD, users=("ns/vm-launcher",)),
     Plan(events=(("Warning", "CloneSourceInUse", "pod ns/vm-launcher using PersistentVolumeClaim source"),),
          result=Result(requeue_after=2.0))),
    (Observation(target(), SOURCE, upload_pod=UPLOAD, refusal="not allowed"),
     Plan(events=(("Warning", "ErrCloneNotAuthorized", "not allowed"),))),
], ids=["upload-not-ready", "no-source", "source-unbound", "source-unpopulated", "source-in-use", "unauthorized"])
def test_waiting_and_refusing(observation: Observation, expected: Plan) -> None:
    assert plan(observation, POD) == expected


def test_success_marks_the_target_once_and_cleans_up() -> None:
    done = pvc("target", notes={ann.ANN_CLONE_REQUEST: "ns/source", ann.ANN_POD_PHASE: "Succeeded"},
               finalizers=(ann.FINALIZER_CLONE_SOURCE,))
    decided = plan(Observation(done, SOURCE, source_pod=pod(POD), secret_exists=True), POD)
    assert decided == Plan((Act.DELETE_SOURCE_POD, Act.DELETE_SECRET, Act.REMOVE_FINALIZER),
                           {ann.ANN_CLONE_OF: "true", ann.ANN_POPULATOR_PROGRESS: "100.00%"},
                           (("Normal", "CloneSucceeded", "Clone Complete"),))
    done["metadata"]["annotations"][ann.ANN_CLONE_OF] = "true"
    assert plan(Observation(done, SOURCE), POD) == Plan((Act.REMOVE_FINALIZER,))


def test_a_deleted_target_takes_its_source_pod_and_secret_along() -> None:
    gone = pvc("target", notes={ann.ANN_CLONE_REQUEST: "ns/source"}, finalizers=(ann.FINALIZER_CLONE_SOURCE,),
               deleting=True)
    assert plan(Observation(gone, SOURCE, source_pod=pod(POD), secret_exists=True), POD).acts == (
        Act.DELETE_SOURCE_POD, Act.DELETE_SECRET, Act.REMOVE_FINALIZER)


def test_progress_and_a_replaced_upload_pod() -> None:
    running = plan(Observation(target(), SOURCE, source_pod=pod(POD), upload_pod=UPLOAD, progress=45.2678), POD)
    assert running.annotations[ann.ANN_POPULATOR_PROGRESS] == "45.27%"
    assert running.result == Result(requeue_after=2.0)
    moved = pod("cdi-upload-target", ip="127.1.0.99")
    assert plan(Observation(target(), SOURCE, source_pod=pod(POD), upload_pod=moved), POD) == Plan(
        (Act.DELETE_SOURCE_POD,), result=Result(requeue_after=1))


def test_a_fatal_source_failure_surfaces_and_ends_both_pods() -> None:
    message = '{"message":"Unable to process data: refused","reason":"CloneRefused","retryable":false}'
    failed = pod(POD, phase="Failed", containerStatuses=[{"name": "c", "restartCount": 0, "state": {
        "terminated": {"exitCode": 1, "reason": "Error", "message": message}}}])
    decided = plan(Observation(target(), SOURCE, source_pod=failed, upload_pod=UPLOAD, secret_exists=True), POD)
    assert decided.acts == (Act.DELETE_SOURCE_POD, Act.DELETE_SECRET, Act.DELETE_UPLOAD_POD)
    assert decided.annotations[ann.ANN_IMPORT_FATAL_ERROR] == "true"
    assert decided.annotations[ann.ANN_POD_PHASE] == "Failed"
    assert decided.events == (("Warning", "CloneRefused", "Unable to process data: refused"),)


def test_a_retryable_source_failure_is_recorded_without_touching_the_upload_pods_state() -> None:
    message = '{"message":"clone interrupted","reason":"ImagePullFailed","retryable":true}'
    restarted = pod(POD, containerStatuses=[{"name": "c", "restartCount": 1, "state": {"running": {}},
                                             "lastState": {"terminated": {"exitCode": 1, "message": message}}}])
    decided = plan(Observation(target(), SOURCE, source_pod=restarted, upload_pod=UPLOAD), POD)
    assert decided.annotations == {ann.ANN_POD_RESTARTS: "1", ann.ANN_POD_LAST_FAILURE: "clone interrupted"}
    assert decided.events == (("Warning", "ErrImportFailed", "clone interrupted"),)
    assert decided.result != DONE


def test_cross_namespace_needs_authorization() -> None:
    assert same_namespace_only(target()) is None
    other = pvc("target", notes={ann.ANN_CLONE_REQUEST: "prod/golden"})
    assert "cloning PersistentVolumeClaim prod/golden into namespace ns is not authorized" in str(
        same_namespace_only(other))


def test_who_uses_a_source_read_write() -> None:
    def user(name: str, *, claim_ro: bool = False, mount_ro: bool = False, phase: str = "Running",
             component: str = "") -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "ns", "labels": {ann.LABEL_COMPONENT: component}},
                "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "source",
                                                                              "readOnly": claim_ro}}],
                         "containers": [{"volumeMounts": [{"name": "v", "mountPath": "/d", "readOnly": mount_ro}]}]},
                "status": {"phase": phase}}
    pods = [user("writer"), user("ro-claim", claim_ro=True), user("ro-mount", mount_ro=True),
            user("finished", phase="Succeeded"), user("other-clone", component="cdi-clone-source")]
    assert pods_using(pods, "source") == ("ns/writer",)
    assert pods_using(pods, "another") == ()


def test_source_pod_spec() -> None:
    inputs = SourcePodInputs(target=target(), source=pvc("source", mode="Block"), pod_name=POD, ca_pem="CA",
                             upload_ip="127.1.0.5", owner_uid="dv-uid", preallocation=True, image="img")
    spec = source_pod(inputs)
    container = spec["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert container["name"] == "cdi-clone-source" and container["command"] == ["cdi-cloner"]
    assert env["CLIENT_KEY"] == {"secretKeyRef": {"name": POD, "key": "tls.key"}}
    assert (env["VOLUME_MODE"], env["MOUNT_POINT"], env["PREALLOCATION"]) == ("block", "/dev/cdi-block-volume", "true")
    assert env["UPLOAD_URL"] == "https://127.1.0.5:8443/v1beta1/upload"
    assert env["CDI_CLONE_SERVER_NAME"] == "cdi-upload-target.ns.svc"
    assert container["volumeDevices"] == [{"name": "cdi-data-vol", "devicePath": "/dev/cdi-block-volume"}]
    assert spec["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "source", "readOnly": True}
    assert spec["metadata"]["annotations"][ann.ANN_OWNER_REF] == "ns/target"
    assert spec["metadata"]["labels"][ann.LABEL_HOST_ASSISTED_SOURCE_POD_CLONE_SOURCE] == "source-uid"
    assert "ownerReferences" not in spec["metadata"]
    assert upload_url_host(spec) == "127.1.0.5"
    affinity = spec["spec"]["affinity"]["podAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"] == {
        "matchLabels": {"service": "cdi-upload-target"}}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity  # the test source has no access modes
    assert clone_client_name(target()) == "ns/source-ns/target"


@pytest.mark.parametrize(("source", "tgt", "reason"), [
    (pvc("s"), pvc("t"), None),
    (pvc("s", size="2Gi"), pvc("t"), "ErrIncompatiblePVC"),
    (pvc("s", size="2Gi"), pvc("t", notes={ann.ANN_PERMISSIVE_CLONE: "true"}), None),
    (pvc("s", notes={ann.ANN_CONTENT_TYPE: "archive"}), pvc("t", notes={ann.ANN_CONTENT_TYPE: "archive"}),
     "CloneContentTypeNotSupported"),
    (pvc("s", notes={ann.ANN_CONTENT_TYPE: "kubevirt"}), pvc("t", notes={ann.ANN_CONTENT_TYPE: "other"}),
     "ErrIncompatiblePVC"),
    (pvc("s", mode="Block", size="1Gi"), pvc("t", size="1Gi"), "ErrIncompatiblePVC"),  # FS overhead eats into it
    (pvc("s", size="1Gi"), pvc("t", mode="Block", size="1Gi"), None),
])
def test_compatibility(source: dict[str, Any], tgt: dict[str, Any], reason: str | None) -> None:
    config = ConfigView.of({"status": {"filesystemOverhead": {"global": "0.055"}}})
    refusal = incompatibility(source, tgt, config)
    assert (refusal.reason if refusal else None) == reason
