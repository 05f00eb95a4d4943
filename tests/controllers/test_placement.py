"""Worker pod placement, pure: the CDI resource's `spec.workload` merged with a pod's own scheduling needs
(`cdi.controllers.placement.merged`), which CDI resource is in force (`activecdi.active_cdi`), and the
three pod builders placing their pods."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.activecdi import active_cdi
from cdi.controllers.config_view import ConfigView
from cdi.controllers.hostclone.podspec import SourcePodInputs, source_pod
from cdi.controllers.importpod.podspec import ImporterPodInputs, importer_pod
from cdi.controllers.placement import Scheduling, merged, workload_of
from cdi.controllers.upload.podspec import UploadPodInputs, upload_pod

REQ = "requiredDuringSchedulingIgnoredDuringExecution"
PREF = "preferredDuringSchedulingIgnoredDuringExecution"
GPU = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
INFRA = {"key": "node-role.kubernetes.io/infra", "operator": "Exists"}
ZONE_A = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
ZONE_B = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
SSD = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
HOST = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
SOURCE_PODS = {"labelSelector": {"matchLabels": {"app": "src"}}, "topologyKey": "kubernetes.io/hostname"}
UPLOAD_POD = {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"service": "up"}},
                                                 "topologyKey": "kubernetes.io/hostname"}}
AVOID = {"labelSelector": {"matchLabels": {"noisy": "yes"}}, "topologyKey": "kubernetes.io/hostname"}


@pytest.mark.parametrize(("workload", "own", "expected"), [
    # Nothing asked: no scheduling fields at all (the pod spec stays as it was before placement existed).
    (Scheduling(), Scheduling(), {}),
    # The workload alone is copied as it is.
    (Scheduling({"role": "worker"}, {"nodeAffinity": {REQ: {"nodeSelectorTerms": [ZONE_A]}}}, (GPU,)), Scheduling(),
     {"nodeSelector": {"role": "worker"}, "affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [ZONE_A]}}},
      "tolerations": [GPU]}),
    # nodeSelector: union; the pod's own value wins a clash.
    (Scheduling({"role": "worker", "zone": "a"}), Scheduling({"zone": "b", "arch": "amd64"}),
     {"nodeSelector": {"role": "worker", "zone": "b", "arch": "amd64"}}),
    # Tolerations: the workload's first, the pod's own after, one already listed not twice.
    (Scheduling(tolerations=(GPU,)), Scheduling(tolerations=(INFRA, GPU)), {"tolerations": [GPU, INFRA]}),
    # Pod affinity (the clone source pod's own terms) is appended to the workload's, as upstream appends.
    (Scheduling(affinity={"podAffinity": {REQ: [AVOID]}, "podAntiAffinity": {REQ: [AVOID]}}),
     Scheduling(affinity={"podAffinity": {REQ: [SOURCE_PODS], PREF: [UPLOAD_POD]}}),
     {"affinity": {"podAffinity": {REQ: [AVOID, SOURCE_PODS], PREF: [UPLOAD_POD]},
                   "podAntiAffinity": {REQ: [AVOID]}}}),
    # Preferred node affinity adds up too.
    (Scheduling(affinity={"nodeAffinity": {PREF: [{"weight": 1, "preference": ZONE_A}]}}),
     Scheduling(affinity={"nodeAffinity": {PREF: [{"weight": 5, "preference": SSD}]}}),
     {"affinity": {"nodeAffinity": {PREF: [{"weight": 1, "preference": ZONE_A}, {"weight": 5, "preference": SSD}]}}}),
    # Required node affinity: terms are ORed, so the pod's requirement is ANDed into each workload term.
    (Scheduling(affinity={"nodeAffinity": {REQ: {"nodeSelectorTerms": [ZONE_A, ZONE_B]}}}),
     Scheduling(affinity={"nodeAffinity": {REQ: {"nodeSelectorTerms": [SSD, HOST]}}}),
     {"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [
         {"matchExpressions": ZONE_A["matchExpressions"] + SSD["matchExpressions"]},
         {**ZONE_A, **HOST},
         {"matchExpressions": ZONE_B["matchExpressions"] + SSD["matchExpressions"]},
         {**ZONE_B, **HOST}]}}}}),
    # ... and taken as it is when the workload requires nothing of the node.
    (Scheduling(affinity={"podAffinity": {REQ: [AVOID]}}),
     Scheduling(affinity={"nodeAffinity": {REQ: {"nodeSelectorTerms": [SSD]}}}),
     {"affinity": {"podAffinity": {REQ: [AVOID]}, "nodeAffinity": {REQ: {"nodeSelectorTerms": [SSD]}}}}),
    # nodeName is only ever the pod's own (a populator's worker pinned to the selected node), next to the
    # workload's selector, which the kubelet still checks.
    (Scheduling({"role": "worker"}), Scheduling(node_name="n1"), {"nodeSelector": {"role": "worker"}, "nodeName": "n1"}),
])
def test_merged(workload: Scheduling, own: Scheduling, expected: dict[str, Any]) -> None:
    assert merged(workload, own) == expected


def test_merged_leaves_its_inputs_alone() -> None:
    workload = Scheduling(affinity={"podAffinity": {REQ: [AVOID]}}, tolerations=(GPU,))
    merged(workload, Scheduling(affinity={"podAffinity": {REQ: [SOURCE_PODS]}}, tolerations=(INFRA,)))
    assert workload == Scheduling(affinity={"podAffinity": {REQ: [AVOID]}}, tolerations=(GPU,))


def cdi(name: str, created: str, phase: str = "", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI",
            "metadata": {"name": name, "creationTimestamp": created}, "spec": spec, "status": {"phase": phase}}


@pytest.mark.parametrize(("cdis", "active"), [
    ([], None),
    ([cdi("only", "2026-01-02T00:00:00Z", "Error")], "only"),  # a single CR is the one, whatever its phase
    ([cdi("second", "2026-01-02T00:00:00Z", "Error"), cdi("first", "2026-01-01T00:00:00Z", "Deployed")], "first"),
    ([cdi("new", "2026-01-02T00:00:00Z", "Deployed"), cdi("old", "2026-01-01T00:00:00Z", "Error")], "new"),
    ([cdi("b", "2026-01-02T00:00:00Z"), cdi("a", "2026-01-03T00:00:00Z")], "b"),  # not settled yet: the oldest
    ([cdi("x", "2026-01-01T00:00:00Z", "Error"), cdi("y", "2026-01-01T00:00:00Z", "Error")], None),
])
def test_active_cdi(cdis: list[dict[str, Any]], active: str | None) -> None:
    found = active_cdi(cdis)
    assert (found["metadata"]["name"] if found else None) == active


def test_workload_of_the_cdi_resource() -> None:
    cr = cdi("cdi", "2026-01-01T00:00:00Z", workload={"nodeSelector": {"role": "worker"}, "tolerations": [GPU],
                                                        "affinity": {"podAffinity": {REQ: [AVOID]}}})
    assert workload_of(cr) == Scheduling({"role": "worker"}, {"podAffinity": {REQ: [AVOID]}}, (GPU,))
    assert workload_of(cdi("cdi", "2026-01-01T00:00:00Z")) == Scheduling()
    assert workload_of(None) == Scheduling()
    assert workload_of(cdi("cdi", "2026-01-01T00:00:00Z", workload={"nodeSelector": {"a": ["not", "a", "string"]}})) \
        == Scheduling()  # unreadable: logged, no placement rather than no pod


WORKLOAD = Scheduling({"role": "worker"}, {"nodeAffinity": {REQ: {"nodeSelectorTerms": [ZONE_A]}}}, (GPU,))


def claim(**notes: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "disk", "namespace": "ns", "uid": "u1", "annotations": notes},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def scheduling_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pod["spec"].items() if k in ("nodeSelector", "affinity", "tolerations", "nodeName")}


def test_importer_and_upload_pods_are_placed() -> None:
    expected = {"nodeSelector": {"role": "worker"}, "tolerations": [GPU],
                "affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [ZONE_A]}}}}
    importer = importer_pod(ImporterPodInputs(claim(), "importer-disk", ConfigView(), placement=WORKLOAD))
    upload = upload_pod(UploadPodInputs(claim(), "cdi-upload-disk", "cdi-upload-disk", ConfigView(), placement=WORKLOAD))
    assert scheduling_of(importer) == scheduling_of(upload) == expected
    assert scheduling_of(importer_pod(ImporterPodInputs(claim(), "importer-disk", ConfigView()))) == {}


def test_a_populator_worker_is_pinned_to_the_selected_node() -> None:
    prime = claim(**{ann.ANN_POPULATOR_KIND: "VolumeImportSource", ann.ANN_SELECTED_NODE: "n1"})
    assert scheduling_of(importer_pod(ImporterPodInputs(prime, "importer-prime", ConfigView())))["nodeName"] == "n1"
    assert scheduling_of(upload_pod(UploadPodInputs(prime, "cdi-upload-prime", "s", ConfigView())))["nodeName"] == "n1"
    # Not a populator's claim: the scheduler (and the claim's volume) decide, as upstream.
    plain = claim(**{ann.ANN_SELECTED_NODE: "n1"})
    assert "nodeName" not in importer_pod(ImporterPodInputs(plain, "importer-disk", ConfigView()))["spec"]


def test_the_clone_source_pod_appends_its_affinity_to_the_workload() -> None:
    source = claim()
    target = {**claim(), "metadata": {"name": "target", "namespace": "ns", "uid": "u2"}}
    pod = source_pod(SourcePodInputs(target, source, "u2-source-pod", "CA", "127.1.0.5", "u2", False, "img",
                                     placement=Scheduling({"role": "worker"},
                                                          {"podAffinity": {REQ: [AVOID]}}, (GPU,))))
    placed = scheduling_of(pod)
    assert placed["nodeSelector"] == {"role": "worker"} and placed["tolerations"] == [GPU]
    required = placed["affinity"]["podAffinity"][REQ]
    assert required[0] == AVOID
    assert [t["labelSelector"]["matchLabels"] for t in required[1:]] == [
        {ann.LABEL_HOST_ASSISTED_SOURCE_POD_CLONE_SOURCE: "u1"}]  # its RWO source's other readers
    assert placed["affinity"]["podAffinity"][PREF][0]["weight"] == 100  # near the upload pod
