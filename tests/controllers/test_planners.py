"""Pure planners of the controllers, as tables: claim rendering, import annotations, the importer pod,
pod-state interpretation, DataVolume status, StorageProfile and CDIConfig status."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.api import DataVolume, parse_object
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers import cdiconfig, storageprofile
from cdi.controllers.config_view import ConfigView
from cdi.controllers.datavolume.claim import new_claim, source_annotations
from cdi.controllers.datavolume.render import RenderError, StorageView, render_pvc_spec
from cdi.controllers.datavolume.status import TOO_SMALL, Observed, import_status
from cdi.controllers.importpod.podspec import ImporterPodInputs, importer_pod
from cdi.controllers.workerstate import IMPORT_SUCCESS, observe_importer, observe_worker

NOW = "2026-11-21T06:00:00Z"


def dv(spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "fedora", "namespace": "default", "uid": "dv-uid", "annotations": {"a": "b"}},
            "spec": spec, **({"status": status} if status else {})}


def typed(doc: dict[str, Any]) -> DataVolume:
    obj = parse_object(doc)
    assert isinstance(obj, DataVolume)
    return obj


def sc(name: str, *, default: bool = False, virt: bool = False, mode: str = "Immediate",
       created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    notes = {}
    if default:
        notes[ann.ANN_DEFAULT_STORAGE_CLASS] = "true"
    if virt:
        notes[ann.ANN_DEFAULT_VIRT_STORAGE_CLASS] = "true"
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "pycdi.local/hostpath",
            "volumeBindingMode": mode, "metadata": {"name": name, "annotations": notes, "creationTimestamp": created}}


PROFILE_SETS = [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
                {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}]
VIEW = StorageView([sc("local", default=True), sc("fast")],
                   {"local": {"status": {"claimPropertySets": PROFILE_SETS}},
                    "fast": {"status": {"claimPropertySets": PROFILE_SETS[1:]}}},
                   ConfigView({"filesystemOverhead": {"global": "0.06", "storageClass": {"fast": "0.1"}}}))
HTTP = {"http": {"url": "https://example.org/disk.qcow2"}}


@pytest.mark.parametrize(("storage", "expected"), [
    ({"resources": {"requests": {"storage": "1Gi"}}},
     {"storageClassName": "local", "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
      "resources": {"requests": {"storage": "1138166334"}}}),
    ({"resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Block"},
     {"storageClassName": "local", "accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
      "resources": {"requests": {"storage": "1073741824"}}}),
    ({"resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"},
     {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
      "resources": {"requests": {"storage": "1073741824"}}}),
    ({"resources": {"requests": {"storage": "10Gi"}}, "accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem"},
     {"storageClassName": "local", "accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem",
      "resources": {"requests": {"storage": "11381663335"}}}),
])
def test_storage_is_completed_from_the_profile_and_inflated(storage: dict[str, Any], expected: dict[str, Any]) -> None:
    assert render_pvc_spec(typed(dv({"source": HTTP, "storage": storage})), VIEW) == expected


def test_pvc_is_used_verbatim() -> None:
    pvc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert render_pvc_spec(typed(dv({"source": HTTP, "pvc": pvc})), VIEW) == pvc


@pytest.mark.parametrize(("spec", "view", "message"), [
    ({"source": HTTP, "storage": {}}, VIEW, "missing storage size"),
    ({"source": HTTP, "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     StorageView([], {}, ConfigView()), "PVC spec is missing accessMode and no storageClass to choose profile"),
    ({"source": HTTP, "contentType": "archive", "storage": {"volumeMode": "Block",
                                                             "resources": {"requests": {"storage": "1Gi"}}}},
     VIEW, "ContentType Archive cannot have block volumeMode"),
    ({"source": HTTP, "storage": {"storageClassName": "missing", "resources": {"requests": {"storage": "1Gi"}}}},
     VIEW, "no accessMode specified in StorageProfile missing"),
])
def test_render_errors(spec: dict[str, Any], view: StorageView, message: str) -> None:
    with pytest.raises(RenderError, match=message) as info:
        render_pvc_spec(typed(dv(spec)), view)
    assert info.value.reason == "ErrClaimNotValid"


def test_newest_default_class_wins_and_virt_default_beats_it() -> None:
    classes = [sc("old", default=True, created="2025-01-01T00:00:00Z"), sc("new", default=True,
                                                                           created="2026-01-01T00:00:00Z")]
    view = StorageView(classes, {"new": {"status": {"claimPropertySets": PROFILE_SETS}}}, ConfigView())
    spec = render_pvc_spec(typed(dv({"source": HTTP, "storage": {"resources": {"requests": {"storage": "1Gi"}}}})),
                           view)
    assert spec["storageClassName"] == "new"
    view = StorageView([*classes, sc("virt", virt=True)], {"virt": {"status": {"claimPropertySets": PROFILE_SETS}}},
                       ConfigView())
    spec = render_pvc_spec(typed(dv({"source": HTTP, "storage": {"resources": {"requests": {"storage": "1Gi"}}}})),
                           view)
    assert spec["storageClassName"] == "virt"


def test_http_source_annotations() -> None:
    source = {"http": {"url": "https://h/x", "secretRef": "creds", "certConfigMap": "ca", "checksum": "sha256:" + "a" * 64,
                       "extraHeaders": ["X-A: 1"], "secretExtraHeaders": ["hdr"], "insecureSkipVerify": True}}
    assert source_annotations(typed(dv({"source": source, "pvc": {}}))) == {
        ann.ANN_SOURCE: "http", ann.ANN_ENDPOINT: "https://h/x", ann.ANN_SECRET: "creds",
        ann.ANN_CERT_CONFIG_MAP: "ca", ann.ANN_CHECKSUM: "sha256:" + "a" * 64, ann.ANN_INSECURE_SKIP_VERIFY: "true",
        f"{ann.ANN_EXTRA_HEADERS}.0": "X-A: 1", f"{ann.ANN_SECRET_EXTRA_HEADERS}.0": "hdr"}
    assert source_annotations(typed(dv({"source": {"blank": {}}, "pvc": {}}))) == {ann.ANN_SOURCE: "none"}


def test_claim_carries_annotations_labels_and_owner() -> None:
    doc = dv({"source": HTTP, "storage": {"resources": {"requests": {"storage": "1Gi"}}}, "preallocation": True})
    claim = new_claim(typed(doc), doc, {"volumeMode": "Filesystem"}, ConfigView(), source_annotations(typed(doc)))
    notes = claim["metadata"]["annotations"]
    assert notes["a"] == "b"
    assert notes[ann.ANN_PREALLOCATION_REQUESTED] == "true"
    assert notes[ann.ANN_CONTENT_TYPE] == "kubevirt"
    assert notes[ann.ANN_POD_RESTARTS] == "0"
    assert claim["metadata"]["labels"][ann.LABEL_APP] == ann.APP_NAME
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "dv-uid"


def pvc(notes: dict[str, str], *, phase: str = "Bound", mode: str = "Filesystem") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "fedora", "namespace": "default", "uid": "pvc-uid", "annotations": notes},
            "spec": {"storageClassName": "local", "volumeMode": mode, "resources": {"requests": {"storage": "1138166334"}}},
            "status": {"phase": phase}}


def test_importer_pod_env_and_volumes() -> None:
    claim = pvc({ann.ANN_SOURCE: "http", ann.ANN_ENDPOINT: "https://h/x", ann.ANN_SECRET: "creds",
                 ann.ANN_CERT_CONFIG_MAP: "ca", ann.ANN_PREALLOCATION_REQUESTED: "true",
                 f"{ann.ANN_EXTRA_HEADERS}.0": "X-A: 1", f"{ann.ANN_SECRET_EXTRA_HEADERS}.0": "hdr"})
    pod = importer_pod(ImporterPodInputs(claim, "importer-fedora", VIEW.config, scratch_claim="fedora-scratch",
                                         owner_uid="dv-uid"))
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["IMPORTER_SOURCE"] == "http" and env["IMPORTER_ENDPOINT"] == "https://h/x"
    assert env["IMPORTER_IMAGE_SIZE"] == "1138166334"
    assert env["FILESYSTEM_OVERHEAD"] == "0.06" and env["OWNER_UID"] == "dv-uid" and env["PREALLOCATION"] == "true"
    assert env["IMPORTER_CERT_DIR"] == "/certs" and env["IMPORTER_EXTRA_HEADER_0"] == "X-A: 1"
    assert env["IMPORTER_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "creds", "key": "accessKeyId"}}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/data", "/scratch", "/certs", "/extraheaders/0"}
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["metadata"]["labels"][ann.LABEL_COMPONENT] == "importer"


def test_block_claim_gets_a_device_and_no_overhead() -> None:
    pod = importer_pod(ImporterPodInputs(pvc({ann.ANN_SOURCE: "none"}, mode="Block"), "importer-fedora", VIEW.config))
    container = pod["spec"]["containers"][0]
    assert container["volumeDevices"] == [{"name": "cdi-data-vol", "devicePath": "/dev/cdi-block-volume"}]
    assert {e["name"]: e.get("value") for e in container["env"]}["FILESYSTEM_OVERHEAD"] == "0"


def pod(state: dict[str, Any], *, phase: str = "Running", last: dict[str, Any] | None = None,
        restarts: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"name": "importer", "state": state, "restartCount": restarts}
    if last:
        status["lastState"] = {"terminated": last}
    return {"metadata": {"name": "importer-fedora"}, "status": {"phase": phase, "containerStatuses": [status]}}


def term(code: int, message: TerminationMessage, reason: str = "Error") -> dict[str, Any]:
    return {"exitCode": code, "reason": reason, "message": message.to_json()}


NOT_FOUND = TerminationMessage("Unable to connect to http data source: expected status code 200, got 404. "
                               "Status: 404 Not Found", reason="ImportSourceUnavailable", retryable=True)
TOO_BIG = TerminationMessage("Unable to process data: virtual image size 9 is larger than the reported available "
                             "storage 1. A larger PVC is required", reason="ImageTooLarge", retryable=False)


def test_running_pod() -> None:
    seen = observe_importer(pvc({}), pod({"running": {}}))
    assert seen.annotations[ann.ANN_POD_PHASE] == "Running"
    assert seen.annotations[ann.ANN_RUNNING_CONDITION] == "true"
    assert not seen.delete_pod


def test_transient_failure_is_left_to_restarts_with_the_reason_shown() -> None:
    seen = observe_importer(pvc({ann.ANN_POD_RESTARTS: "1"}),
                            pod({"waiting": {"reason": "CrashLoopBackOff"}}, last=term(1, NOT_FOUND), restarts=2))
    assert not seen.delete_pod and not seen.fatal
    assert seen.annotations[ann.ANN_POD_RESTARTS] == "2"
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_REASON] == "ImportSourceUnavailable"
    assert "got 404" in seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE]
    assert seen.events[0][1] == "ErrImportFailed"


def test_fatal_failure_stops_retries() -> None:
    seen = observe_importer(pvc({}), pod({"terminated": term(1, TOO_BIG)}, phase="Running"))
    assert seen.fatal and seen.delete_pod
    assert seen.annotations[ann.ANN_IMPORT_FATAL_ERROR] == "true"
    assert seen.annotations[ann.ANN_POD_PHASE] == "Failed"


def test_checksum_mismatch_is_fatal_even_with_exit_zero() -> None:
    message = TerminationMessage("Unable to process data: checksum mismatch: expected sha256:0, calculated sha256:1")
    seen = observe_importer(pvc({}), pod({"terminated": term(0, message, "Completed")}, phase="Succeeded"))
    assert seen.fatal and seen.annotations[ann.ANN_RUNNING_CONDITION_REASON] == "ChecksumError"


def test_scratch_required_recreates_the_pod() -> None:
    message = TerminationMessage("Import Complete", scratch_space_required=True, preallocation_applied=False)
    seen = observe_importer(pvc({}), pod({"terminated": term(0, message, "Completed")}, phase="Succeeded"))
    assert seen.delete_pod and not seen.complete
    assert seen.annotations[ann.ANN_REQUIRES_SCRATCH] == "true"
    assert ann.ANN_POD_PHASE not in seen.annotations


def test_success_completes_and_deletes_the_pod() -> None:
    message = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=True)
    seen = observe_importer(pvc({}), pod({"terminated": term(0, message, "Completed")}, phase="Succeeded"))
    assert seen.complete and seen.delete_pod
    assert seen.annotations[ann.ANN_PREALLOCATION_APPLIED] == "true"


def test_oom_kill_retries_with_direct_io() -> None:
    seen = observe_importer(pvc({}), pod({"waiting": {}}, last={"exitCode": 137, "reason": "OOMKilled"}))
    assert seen.delete_pod and seen.annotations[ann.ANN_REQUIRES_DIRECT_IO] == "true"


def observed(notes: dict[str, str] | None, *, claim_phase: str = "Bound", wffc: bool = False,
             progress: float | None = None, previous: dict[str, Any] | None = None) -> Observed:
    doc = dv({"source": HTTP, "storage": {}}, **(previous or {}))
    return Observed(doc, pvc(notes, phase=claim_phase) if notes is not None else None, wffc, progress, None, NOW)


@pytest.mark.parametrize(("obs", "phase"), [
    (observed(None), "Pending"),
    (observed({}, claim_phase="Pending"), "Pending"),
    (observed({}, claim_phase="Pending", wffc=True), "WaitForFirstConsumer"),
    (observed({ann.ANN_IMMEDIATE_BINDING: "true"}, claim_phase="Pending", wffc=True), "Pending"),
    (observed({}), "PVCBound"),
    (observed({ann.ANN_IMPORT_POD: "importer-fedora"}), "ImportScheduled"),
    (observed({ann.ANN_POD_PHASE: "Running"}), "ImportInProgress"),
    (observed({ann.ANN_POD_PHASE: "Failed"}, previous={"phase": "ImportInProgress"}), "ImportInProgress"),
    (observed({ann.ANN_POD_PHASE: "Succeeded"}), "Succeeded"),
    (observed({ann.ANN_IMPORT_FATAL_ERROR: "true"}), "Failed"),
    (observed({}, claim_phase="Lost"), "Failed"),
])
def test_phase_table(obs: Observed, phase: str) -> None:
    assert import_status(obs).status["phase"] == phase


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("message", "")) for c in status["conditions"]}


def test_conditions_and_progress_while_running() -> None:
    plan = import_status(observed({ann.ANN_POD_PHASE: "Running", ann.ANN_RUNNING_CONDITION: "true",
                                   ann.ANN_RUNNING_CONDITION_REASON: "Pod is running", ann.ANN_POD_RESTARTS: "2"},
                                  progress=45.339))
    assert plan.status["progress"] == "45.34%"
    assert plan.status["restartCount"] == 2
    assert conditions(plan.status) == {"Ready": ("False", "TransferRunning", ""), "Bound": ("True", "Bound", "PVC fedora Bound"),
                                       "Running": ("True", "Pod is running", "")}
    assert ("Normal", "ImportInProgress", "Import into fedora in progress") in plan.events


def test_too_small_is_simplified_and_fails() -> None:
    plan = import_status(observed({ann.ANN_IMPORT_FATAL_ERROR: "true", ann.ANN_RUNNING_CONDITION: "false",
                                   ann.ANN_RUNNING_CONDITION_REASON: "ImageTooLarge",
                                   ann.ANN_RUNNING_CONDITION_MESSAGE: TOO_BIG.message},
                                  previous={"phase": "ImportInProgress"}))
    assert plan.status["phase"] == "Failed"
    assert conditions(plan.status)["Running"] == ("False", "ImageTooLarge", TOO_SMALL)
    assert any(e[1] == "ImportFailed" for e in plan.events)


def test_succeeded_shows_full_progress_and_ready() -> None:
    plan = import_status(observed({ann.ANN_POD_PHASE: "Succeeded", ann.ANN_RUNNING_CONDITION: "false"}))
    assert plan.status["progress"] == "100.0%"
    assert conditions(plan.status)["Ready"][0] == "True"


def test_unchanged_conditions_keep_their_transition_time() -> None:
    first = import_status(observed({ann.ANN_POD_PHASE: "Running", ann.ANN_RUNNING_CONDITION: "true"}))
    later = Observed(dv({"source": HTTP, "storage": {}}, **first.status),
                     pvc({ann.ANN_POD_PHASE: "Running", ann.ANN_RUNNING_CONDITION: "true"}), False, 50.0, None,
                     "2026-11-21T07:00:00Z")
    second = import_status(later)
    assert [c["lastTransitionTime"] for c in second.status["conditions"]] == [NOW, NOW, NOW]
    assert second.events == ()


def test_storage_profile_status_from_capabilities_and_overrides() -> None:
    status = storageprofile.desired_status(sc("local"), {}, NOW)
    assert status["claimPropertySets"] == PROFILE_SETS
    assert status["cloneStrategy"] == "snapshot"
    assert status["conditions"][0]["reason"] == "RecognizedProvisioner"
    override = [{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}]
    assert storageprofile.desired_status(sc("local"), {"claimPropertySets": override}, NOW)["claimPropertySets"] == override
    unknown = {**sc("x"), "provisioner": "example.com/unknown"}
    status = storageprofile.desired_status(unknown, {}, NOW)
    assert status["claimPropertySets"] == [] and status["conditions"][0]["status"] == "False"


def test_cdiconfig_status() -> None:
    status = cdiconfig.desired_status({"filesystemOverhead": {"global": "0.1", "storageClass": {"fast": "0.2"}},
                                       "scratchSpaceStorageClass": "gone", "preallocation": True,
                                       "podResourceRequirements": {"limits": {"cpu": "1"}}},
                                      [sc("local"), sc("fast")], "https://127.0.0.1:31001")
    assert status["filesystemOverhead"] == {"global": "0.1", "storageClass": {"fast": "0.2", "local": "0.1"}}
    assert status["scratchSpaceStorageClass"] == ""
    assert status["preallocation"] is True
    assert status["defaultPodResourceRequirements"]["limits"] == {"cpu": "1", "memory": "600M"}
    assert status["uploadProxyURL"] == "https://127.0.0.1:31001"


def test_scratch_required_says_why() -> None:
    why = "scratch space required and none found: vhdx needs scratch space: vhdx needs random access"
    message = TerminationMessage(why, scratch_space_required=True, preallocation_applied=False)
    seen = observe_importer(pvc({}), pod({"terminated": term(0, message, "Completed")}, phase="Succeeded"))
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE] == why


def worker_pod(component: str, name: str, state: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    doc = pod(state, **kwargs)
    doc["metadata"] = {"name": name, "labels": {ann.LABEL_COMPONENT: component}}
    return doc


KILLED_LOG = "2026-11-21 06:00:01 INFO importer: progress 48.20%\n"


@pytest.mark.parametrize(("component", "name", "killed", "text"), [
    ("importer", "importer-fedora", {"exitCode": 137, "reason": "Error", "message": KILLED_LOG},
     "Importer pod importer-fedora was killed (exit code 137, SIGKILL)"),
    ("importer", "importer-fedora", {"exitCode": 143, "signal": 15, "reason": "Error", "message": KILLED_LOG},
     "Importer pod importer-fedora was killed (exit code 143, SIGTERM)"),
    ("cdi-upload-server", "cdi-upload-fedora", {"exitCode": 137, "signal": 9, "reason": "Error"},
     "Upload server pod cdi-upload-fedora was killed (exit code 137, SIGKILL)"),
])
def test_a_killed_worker_is_reported_as_killed_and_retried(component: str, name: str, killed: dict[str, Any],
                                                           text: str) -> None:
    seen = observe_worker(pvc({ann.ANN_POD_RESTARTS: "0"}),
                          worker_pod(component, name, {"waiting": {"reason": "CrashLoopBackOff"}}, last=killed,
                                     restarts=1), IMPORT_SUCCESS)
    assert not seen.fatal and not seen.delete_pod
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_REASON] == "Error"
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE] == text
    assert seen.events == (("Warning", "ErrImportFailed", text),)


def test_a_killed_worker_that_is_still_terminated_says_so_too() -> None:
    seen = observe_importer(pvc({}), worker_pod("importer", "importer-fedora", {"terminated": {
        "exitCode": 137, "signal": 9, "reason": "Error", "message": KILLED_LOG}}, phase="Running"))
    assert not seen.fatal
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE] == \
        "Importer pod importer-fedora was killed (exit code 137, SIGKILL)"


def test_a_worker_message_with_a_reason_wins_over_the_kill() -> None:
    seen = observe_importer(pvc({}), worker_pod("importer", "importer-fedora", {"waiting": {}},
                                                last={**term(1, NOT_FOUND), "exitCode": 137}, restarts=1))
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_REASON] == "ImportSourceUnavailable"
    assert "got 404" in seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE]


def test_an_oom_kill_says_which_pod_and_retries_with_direct_io() -> None:
    seen = observe_importer(pvc({}), worker_pod("importer", "importer-fedora", {"waiting": {}},
                                                last={"exitCode": 137, "reason": "OOMKilled"}))
    assert seen.annotations[ann.ANN_RUNNING_CONDITION_MESSAGE] == (
        "Importer pod importer-fedora was killed for using too much memory (exit code 137, SIGKILL); retrying "
        "with direct I/O")


def test_the_datavolume_shows_and_announces_the_kill() -> None:
    text = "Importer pod importer-fedora was killed (exit code 137, SIGKILL)"
    plan = import_status(observed({ann.ANN_POD_PHASE: "Running", ann.ANN_RUNNING_CONDITION: "false",
                                   ann.ANN_RUNNING_CONDITION_REASON: "Error", ann.ANN_RUNNING_CONDITION_MESSAGE: text,
                                   ann.ANN_POD_RESTARTS: "1"}, previous={"phase": "ImportInProgress"}))
    assert plan.status["phase"] == "ImportInProgress"
    assert conditions(plan.status)["Running"] == ("False", "Error", text)
    assert ("Warning", "Error", text) in plan.events
