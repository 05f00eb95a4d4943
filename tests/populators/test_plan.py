"""The import and upload populators' decision, as tables of `plan(observed) == expected`."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView
from cdi.controllers.populators.plan import (
    CreatePrime,
    DeletePrime,
    Event,
    Observed,
    PatchTarget,
    PatchVolume,
    Plan,
    plan,
)
from cdi.controllers.populators.prime import prime_claim, readiness
from cdi.controllers.populators.sources import IMPORT, UPLOAD, PopulatorKind, import_member_annotations

UID = "1234"
PRIME = f"prime-{UID}"
REF = {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeImportSource", "name": "src"}
SC = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local"},
      "provisioner": "local.csi.example"}
WFFC = {**SC, "volumeBindingMode": "WaitForFirstConsumer"}
HTTP_SOURCE = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "VolumeImportSource",
               "metadata": {"name": "src", "namespace": "default"},
               "spec": {"source": {"http": {"url": "http://h/disk.img", "extraHeaders": ["A: b"]}}}}
UPLOAD_SOURCE = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "VolumeUploadSource",
                 "metadata": {"name": "src", "namespace": "default"}, "spec": {"contentType": "archive"}}


def target(notes: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "disk", "namespace": "default", "uid": UID, "annotations": notes or {}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "local", "dataSourceRef": REF, **spec}}


def prime(notes: dict[str, str], bound: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    claim: dict[str, Any] = {"metadata": {"name": PRIME, "namespace": "default", "uid": "p-uid",
                                          "annotations": notes, "labels": labels or {}},
                             "spec": {"volumeName": "pv-1"} if bound else {}}
    claim["status"] = {"phase": "Bound"} if bound else {"phase": "Pending"}
    return claim


def volume(claim_uid: str) -> dict[str, Any]:
    return {"metadata": {"name": "pv-1"}, "spec": {"claimRef": {"name": "x", "namespace": "default", "uid": claim_uid}}}


def seen(claim: dict[str, Any], kind: PopulatorKind = IMPORT, **kwargs: Any) -> Observed:
    values: dict[str, Any] = {"source": HTTP_SOURCE if kind is IMPORT else UPLOAD_SOURCE, "storage_class": SC,
                              "prime": None, "volume": None}
    values.update(kwargs)
    return Observed(claim, kind, **values)


def test_a_new_import_creates_pvc_prime_with_the_source_annotations() -> None:
    decided = plan(seen(target({ann.ANN_POD_RETAIN_AFTER_COMPLETION: "true"})))
    created = decided.actions[0]
    assert isinstance(created, CreatePrime)
    assert decided.actions[1:] == (PatchTarget({ann.ANN_PVC_PRIME_NAME: PRIME}),
                                   Event("Normal", "CreatedPVCPrimeSuccessfully", "PVC Prime created successfully"))
    meta, spec = created.claim["metadata"], created.claim["spec"]
    assert meta["name"] == PRIME and meta["ownerReferences"][0]["uid"] == UID
    assert meta["labels"] == {"app": "containerized-data-importer", "velero.io/exclude-from-backup": "true"}
    assert meta["annotations"] == {
        ann.ANN_SOURCE: "http", ann.ANN_ENDPOINT: "http://h/disk.img", f"{ann.ANN_EXTRA_HEADERS}.0": "A: b",
        ann.ANN_CONTENT_TYPE: "kubevirt", ann.ANN_PREALLOCATION_REQUESTED: "false",
        ann.ANN_POPULATOR_KIND: "VolumeImportSource", ann.ANN_IMMEDIATE_BINDING: "true", ann.ANN_POD_RESTARTS: "0",
        ann.ANN_POD_RETAIN_AFTER_COMPLETION: "true"}
    assert spec == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                    "volumeMode": "Filesystem", "storageClassName": "local"}


def test_an_upload_prime_is_an_upload_target_with_the_sources_content_type() -> None:
    decided = plan(seen(target(), UPLOAD, config=ConfigView({"preallocation": True})))
    created = decided.actions[0]
    assert isinstance(created, CreatePrime)
    notes = created.claim["metadata"]["annotations"]
    assert (notes[ann.ANN_UPLOAD_REQUEST], notes[ann.ANN_CONTENT_TYPE], notes[ann.ANN_POPULATOR_KIND],
            notes[ann.ANN_PREALLOCATION_REQUESTED]) == ("", "archive", "VolumeUploadSource", "true")
    assert ann.ANN_SOURCE not in notes


@pytest.mark.parametrize(("member", "expected"), [
    ("blank", {ann.ANN_SOURCE: "none"}),
    ("registry", {ann.ANN_SOURCE: "registry", ann.ANN_ENDPOINT: "docker://r/i", ann.ANN_REGISTRY_IMPORT_METHOD: "node",
                  ann.ANN_CERT_CONFIG_MAP: "ca"}),
    ("s3", {ann.ANN_SOURCE: "s3", ann.ANN_ENDPOINT: "http://s3/b/k", ann.ANN_SECRET: "creds"}),
])
def test_import_members_become_the_datavolume_annotations(member: str, expected: dict[str, str]) -> None:
    fields = {"blank": {}, "registry": {"url": "docker://r/i", "pullMethod": "node", "certConfigMap": "ca"},
              "s3": {"url": "http://s3/b/k", "secretRef": "creds"}}[member]
    assert import_member_annotations(member, fields) == expected


def test_an_invalid_source_is_refused_with_a_warning() -> None:
    broken = {**HTTP_SOURCE, "spec": {"source": {}}}
    decided = plan(seen(target(), source=broken))
    assert decided.requeue_after == 30.0 and isinstance(decided.actions[0], Event)
    assert decided.actions[0].reason == "InvalidPopulationSource"


@pytest.mark.parametrize(("claim", "storage_class", "expected"), [
    (target(), SC, None),
    (target(), WFFC, "waiting for the claim's first consumer"),
    (target({ann.ANN_SELECTED_NODE: "node-1"}), WFFC, None),
    (target({ann.ANN_IMMEDIATE_BINDING: "true"}), WFFC, None),
    (target(), None, "storage class local not found"),
    (target(storageClassName=None), SC, "the claim has no storage class yet"),
    (target(), {**SC, "provisioner": "kubernetes.io/aws-ebs"}, "StorageClassNotSupported"),
    (target({"pv.kubernetes.io/migrated-to": "ebs.csi.aws.com"}), {**SC, "provisioner": "kubernetes.io/aws-ebs"}, None),
    (target(storageClassName=""), SC, "ClaimNotValid"),
])
def test_readiness_for_population(claim: dict[str, Any], storage_class: dict[str, Any] | None,
                                  expected: str | None) -> None:
    found = readiness(claim, storage_class)
    said = None if found is None else getattr(found, "why", None) or getattr(found, "reason", None)
    assert said == expected


def test_waiting_cases_create_nothing() -> None:
    assert plan(seen(target(), storage_class=WFFC)) == Plan()
    assert plan(seen(target(), source=None)) == Plan(requeue_after=5.0)
    other = {**HTTP_SOURCE, "spec": {"targetClaim": "another", "source": {"http": {"url": "http://h/d"}}}}
    assert plan(seen(target(), source=other)) == Plan()


def test_selected_node_is_copied_to_pvc_prime() -> None:
    created = prime_claim(target({ann.ANN_SELECTED_NODE: "node-1"}), {})
    assert created["metadata"]["annotations"][ann.ANN_SELECTED_NODE] == "node-1"


def test_running_import_mirrors_state_and_progress_every_two_seconds() -> None:
    state = {ann.ANN_POD_PHASE: "Running", ann.ANN_POD_READY: "true", ann.ANN_RUNNING_CONDITION: "true",
             ann.ANN_IMPORT_POD: f"importer-{PRIME}", ann.ANN_SOURCE: "http"}
    decided = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME}), prime=prime(state), worker_running=True,
                        progress=45.271))
    assert decided == Plan((PatchTarget({ann.ANN_POD_PHASE: "Running", ann.ANN_POD_READY: "true",
                                         ann.ANN_RUNNING_CONDITION: "true",
                                         ann.ANN_POPULATOR_PROGRESS: "45.27%"}),), 2.0)


@pytest.mark.parametrize(("progress", "running", "shown", "expected"), [
    (None, False, None, "N/A"),  # no worker yet
    (None, False, "12.00%", None),  # worker gone between restarts: keep what was shown
    (100.0, True, "99.00%", None),  # never 100% before it succeeded
    (None, True, "12.00%", None),  # a scrape that failed
])
def test_progress_rules(progress: float | None, running: bool, shown: str | None, expected: str | None) -> None:
    notes = {ann.ANN_PVC_PRIME_NAME: PRIME, **({ann.ANN_POPULATOR_PROGRESS: shown} if shown else {})}
    decided = plan(seen(target(notes), prime=prime({ann.ANN_POD_PHASE: "Pending"}), worker_running=running,
                        progress=progress))
    patch = decided.actions[0] if decided.actions else PatchTarget({})
    assert isinstance(patch, PatchTarget)
    assert patch.annotations.get(ann.ANN_POPULATOR_PROGRESS) == expected


def test_uploads_report_no_progress() -> None:
    decided = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME}), UPLOAD,
                        prime=prime({ann.ANN_POD_PHASE: "Running", ann.ANN_POD_READY: "true"})))
    assert decided == Plan((PatchTarget({ann.ANN_POD_PHASE: "Running", ann.ANN_POD_READY: "true"}),))


def test_a_failed_worker_is_said_once() -> None:
    failed = prime({ann.ANN_POD_PHASE: "Failed", ann.ANN_IMPORT_FATAL_ERROR: "true"})
    first = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME, ann.ANN_POPULATOR_PROGRESS: "N/A"}), prime=failed))
    assert first.actions == (PatchTarget({ann.ANN_POD_PHASE: "Failed", ann.ANN_IMPORT_FATAL_ERROR: "true"}),
                             Event("Warning", "ImportFailed", "Failed to import into PVC disk"))
    again = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME, ann.ANN_POPULATOR_PROGRESS: "N/A",
                              ann.ANN_POD_PHASE: "Failed", ann.ANN_IMPORT_FATAL_ERROR: "true"}), prime=failed))
    assert again == Plan()


def test_success_copies_labels_then_hands_the_volume_over() -> None:
    done = prime({ann.ANN_POD_PHASE: "Succeeded"}, labels={"instancetype.kubevirt.io/default-preference": "fedora",
                                                           "app": "containerized-data-importer"})
    decided = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME}), prime=done, volume=volume("p-uid")))
    assert decided.actions == (
        PatchTarget({ann.ANN_POD_PHASE: "Succeeded", ann.ANN_POPULATOR_PROGRESS: "100.0%"},
                    {"instancetype.kubevirt.io/default-preference": "fedora"}),
        PatchVolume("pv-1", {"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                   "namespace": "default", "name": "disk", "uid": UID,
                                                   "resourceVersion": None}}}),
        Event("Normal", "ImportSucceeded", "Successfully imported into PVC disk"))


def test_after_the_hand_over_wait_for_the_binder_then_delete_pvc_prime() -> None:
    notes = {ann.ANN_PVC_PRIME_NAME: PRIME, ann.ANN_POD_PHASE: "Succeeded", ann.ANN_POPULATOR_PROGRESS: "100.0%"}
    done = prime({ann.ANN_POD_PHASE: "Succeeded"})
    assert plan(seen(target(notes), prime=done, volume=volume(UID))) == Plan(requeue_after=5.0)
    assert plan(seen(target(notes, volumeName="pv-1"), prime=done)) == Plan((DeletePrime(PRIME),))
    kept = prime({ann.ANN_POD_PHASE: "Succeeded", ann.ANN_POD_RETAIN_AFTER_COMPLETION: "true"})
    assert plan(seen(target(notes, volumeName="pv-1"), prime=kept)) == Plan()


def test_a_volume_bound_elsewhere_is_refused() -> None:
    decided = plan(seen(target({ann.ANN_PVC_PRIME_NAME: PRIME, ann.ANN_POD_PHASE: "Succeeded",
                                ann.ANN_POPULATOR_PROGRESS: "100.0%"}),
                        prime=prime({ann.ANN_POD_PHASE: "Succeeded"}), volume=volume("stranger")))
    assert decided.requeue_after == 30.0 and [a.reason for a in decided.actions if isinstance(a, Event)] == [
        "RebindFailed"]


def test_a_deleted_target_deletes_pvc_prime() -> None:
    claim = target()
    claim["metadata"]["deletionTimestamp"] = "2026-11-21T06:00:00Z"
    assert plan(seen(claim, prime=prime({}))) == Plan((DeletePrime(PRIME),))


def test_pvc_prime_events_are_repeated_on_the_target_once() -> None:
    running = prime({ann.ANN_POD_PHASE: "Running"})
    events = (("Warning", "ErrImportFailed", "expected status code 200, got 404"),
              ("Warning", "ClaimMisbound", "Two claims are bound to the same volume"),
              ("Normal", "ProvisioningSucceeded", "Successfully provisioned volume pv-1"))
    notes = {ann.ANN_PVC_PRIME_NAME: PRIME, ann.ANN_POD_PHASE: "Running", ann.ANN_POPULATOR_PROGRESS: "N/A"}
    decided = plan(seen(target(notes), prime=running, prime_events=events,
                        target_events=(("Normal", "ProvisioningSucceeded",
                                        f"[{PRIME}] : Successfully provisioned volume pv-1"),)))
    assert decided.actions == (Event("Warning", "ErrImportFailed", f"[{PRIME}] : expected status code 200, got 404"),)
