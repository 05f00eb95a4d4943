"""The CDI resource's spec applied to the rendered install (`cdi.operator.customize`): pure, on the real
`render_all` output. certConfig's lifetimes are tests/operator/test_cert_lifetimes.py's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdi.goduration import parse as go_duration
from cdi.install import InstallOptions, render_all
from cdi.install.operatorbundle import operator_bundle
from cdi.install.tls import credentials
from cdi.operator.customize import CUSTOMIZER_ANNOTATION, customize, stamp
from cdi.operator.manifests import deployment_ready

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return render_all(InstallOptions(credentials("cdi", NOW), "cdi", "registry.example/pycdi:v1"))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def test_an_empty_spec_changes_nothing(documents: list[dict[str, Any]]) -> None:
    assert customize(documents, {}) == (documents, [])


def test_infra_placement_replicas_and_pull_policy_reach_every_deployment(documents: list[dict[str, Any]]) -> None:
    toleration = {"key": "infra", "operator": "Exists", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "role", "operator": "In", "values": ["infra"]}]}]}}}
    docs, problems = customize(documents, {
        "imagePullPolicy": "Always", "priorityClass": "system-cluster-critical",
        "infra": {"nodeSelector": {"role": "infra"}, "tolerations": [toleration], "affinity": affinity,
                  "deploymentReplicas": 2, "apiServerReplicas": 3, "uploadProxyReplicas": 0}})
    assert problems == []
    for name, replicas in (("cdi-deployment", 2), ("cdi-apiserver", 3), ("cdi-uploadproxy", 0)):
        assert find(docs, "Deployment", name)["spec"]["replicas"] == replicas
        spec = pod(docs, name)
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "infra"}
        assert spec["tolerations"] == [toleration] and spec["affinity"] == affinity
        assert spec["priorityClassName"] == "system-cluster-critical"
        assert {c["imagePullPolicy"] for c in spec["containers"]} == {"Always"}
    assert find(documents, "Deployment", "cdi-deployment")["spec"]["replicas"] == 1  # the input is untouched


def test_flags_are_appended_to_their_component_only(documents: list[dict[str, Any]]) -> None:
    docs, problems = customize(documents, {"customizeComponents": {"flags": {"controller": {"v": "5",
                                                                                              "qps": "50"}}}})
    assert problems == []
    before = pod(documents, "cdi-deployment")["containers"][0]["args"]
    assert pod(docs, "cdi-deployment")["containers"][0]["args"] == [*before, "-v", "5", "--qps", "50"]
    assert pod(docs, "cdi-apiserver") == pod(documents, "cdi-apiserver")
    assert CUSTOMIZER_ANNOTATION in find(docs, "Deployment", "cdi-deployment")["metadata"]["annotations"]


def test_json_merge_and_strategic_patches_apply_and_bad_ones_are_refused(documents: list[dict[str, Any]]) -> None:
    patches = [
        {"resourceName": "cdi-uploadproxy", "resourceType": "Deployment", "type": "json",
         "patch": json.dumps([{"op": "add", "path": "/spec/template/metadata/annotations",
                               "value": {"team": "storage"}}])},
        {"resourceName": "cdi-api", "resourceType": "Service", "type": "merge",
         "patch": json.dumps({"metadata": {"labels": {"exposed": "yes"}}})},
        {"resourceName": "cdi-apiserver", "resourceType": "Deployment", "type": "strategic",
         "patch": json.dumps({"spec": {"replicas": 5, "template": {"spec": {"containers": [
             {"name": "cdi-apiserver", "resources": {"limits": {"memory": "1Gi"}}}]}}}})},
        {"resourceName": "nope", "resourceType": "Deployment", "type": "merge", "patch": "{}"},
        {"resourceName": "cdi-deployment", "resourceType": "Deployment", "type": "json", "patch": "not json"},
    ]
    docs, problems = customize(documents, {"customizeComponents": {"patches": patches}})
    proxy = find(docs, "Deployment", "cdi-uploadproxy")
    assert proxy["spec"]["template"]["metadata"]["annotations"] == {"team": "storage"}
    assert find(docs, "Service", "cdi-api")["metadata"]["labels"]["exposed"] == "yes"
    apiserver = find(docs, "Deployment", "cdi-apiserver")
    (container,) = apiserver["spec"]["template"]["spec"]["containers"]
    assert apiserver["spec"]["replicas"] == 5
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "150Mi"}, "limits": {"memory": "1Gi"}}
    assert container["image"] == "registry.example/pycdi:v1"  # merged into the container by name, not replaced
    assert problems[0] == "customizeComponents patch of Deployment nope: no such object in the install"
    assert problems[1].startswith("customizeComponents patch of Deployment cdi-deployment: the patch is not JSON")
    assert len(problems) == 2
    assert CUSTOMIZER_ANNOTATION in proxy["metadata"]["annotations"]


def test_stamp_sets_the_owner_and_keeps_the_create_version(documents: list[dict[str, Any]]) -> None:
    owner = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "name": "cdi", "uid": "u-1",
             "controller": True, "blockOwnerDeletion": True}
    fresh = stamp(documents[1], owner, "v2", None)
    assert fresh["metadata"]["ownerReferences"] == [owner]
    assert fresh["metadata"]["labels"]["operator.cdi.kubevirt.io/createVersion"] == "v2"
    kept = stamp(documents[1], owner, "v2", "v1")
    assert (kept["metadata"]["labels"]["operator.cdi.kubevirt.io/createVersion"],
            kept["metadata"]["labels"]["operator.cdi.kubevirt.io/updateVersion"]) == ("v1", "v2")


@pytest.mark.parametrize(("text", "seconds"), [("48h", 172800), ("1h30m", 5400), ("90m", 5400), ("1.5h", 5400),
                                               ("10s", 10)])
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "48", "2d", "h", "1h 30m"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        go_duration(text)


@pytest.mark.parametrize(("spec", "status", "generation", "ready"), [
    ({"replicas": 2}, {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 3}, 3, True),
    ({}, {"replicas": 1, "readyReplicas": 1, "observedGeneration": 1}, 1, True),  # replicas default to 1
    ({"replicas": 2}, {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3}, 3, False),
    ({"replicas": 1}, {"replicas": 1, "readyReplicas": 1, "observedGeneration": 2}, 3, False),  # spec not seen yet
    ({"replicas": 2}, {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 1, "observedGeneration": 3}, 3,
     False),  # still rolling out
    ({"replicas": 1}, {}, 1, False),  # no status: no pod ever ran (no kubelet)
    ({"replicas": 0}, {"observedGeneration": 1}, 1, True),
])
def test_deployment_readiness(spec: dict[str, Any], status: dict[str, Any], generation: int, ready: bool) -> None:
    assert deployment_ready({"metadata": {"generation": generation}, "spec": spec, "status": status}) is ready


def test_workload_placement_is_left_to_the_controllers(documents: list[dict[str, Any]]) -> None:
    """spec.workload places worker pods (`cdi.controllers.placement`), not the install: nothing changes, no problem."""
    docs, problems = customize(documents, {"workload": {"nodeSelector": {"role": "worker"},
                                                        "tolerations": [{"operator": "Exists"}]}})
    assert docs == documents
    assert problems == []


def test_the_operator_bundle_installs_the_operator_and_the_cdi_kind_only() -> None:
    bundle = operator_bundle("cdi", "registry.example/pycdi:v1")
    assert [(d["kind"], d["metadata"]["name"]) for d in bundle] == [
        ("Namespace", "cdi"), ("CustomResourceDefinition", "cdis.cdi.kubevirt.io"), ("ServiceAccount", "cdi-operator"),
        ("ClusterRole", "cdi-operator"), ("ClusterRoleBinding", "cdi-operator"), ("Role", "cdi-operator"),
        ("RoleBinding", "cdi-operator"), ("Deployment", "cdi-operator")]
    container = bundle[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["operator", "--namespace", "cdi", "--image", "registry.example/pycdi:v1"]
    assert bundle[-1]["spec"]["template"]["spec"]["serviceAccountName"] == "cdi-operator"
