"""Strategic merge patch (`cdi.operator.strategicmerge`) as tables over the install's own objects: merge keys,
`null`, the directives, lists without a strategy, and what is refused. Every table row is also checked against
Kubernetes' implementation itself — `kubectl patch --local --type strategic` (apimachinery's
`StrategicMergePatch`, no API server needed) from the test cluster's binaries — so the expected values are
not only ours. The examples upstream documents for customizeComponents are rows here: a container's resources
by its name (KubeVirt's runbooks), an affinity replaced (a strategic affinity patch of cdi-deployment).
"""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.install import InstallOptions, render_all
from cdi.install.tls import credentials
from cdi.operator.customize import merge_patch
from cdi.operator.strategicmerge import StrategicMergeError, strategic_merge
from tests.support.kubecluster import KubeBinariesUnavailable, kube_binaries

Obj = dict[str, Any]
DOCUMENTS = render_all(InstallOptions(credentials("cdi", datetime.now(UTC)), "cdi", "registry.example/pycdi:v1",
                                      monitoring=True))


# Rendered objects with something the install does not set, for the directives that need it: name+variant.
VARIANTS: dict[str, Obj] = {
    "strategy": {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
    "finalizers": {"metadata": {"finalizers": ["example.org/old", "example.org/keep"]}},
}


def rendered(kind: str, name: str) -> Obj:
    """The install's object `name` (`name+variant`: with `VARIANTS[variant]` merged in)."""
    name, _, variant = name.partition("+")
    found = copy.deepcopy(next(d for d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name))
    return merge_patch(found, VARIANTS[variant]) if variant else found


def container(doc: Obj, index: int = 0) -> Obj:
    found: Obj = doc["spec"]["template"]["spec"]["containers"][index]
    return found


def env(doc: Obj) -> list[tuple[str, str | None]]:
    return [(e["name"], e.get("value")) for e in container(doc).get("env", [])]


CONTROLLER = rendered("Deployment", "cdi-deployment")
CONTROLLER_ENV = env(CONTROLLER)

# (what, kind, name, patch, check of the result)
CASES: list[tuple[str, str, str, Obj, Any]] = [
    ("a container's resources by its name (upstream's runbook example)", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "cdi-deployment",
                                                     "resources": {"requests": {"cpu": "200m"}}}]}}}},
     lambda d: container(d)["resources"] == {"requests": {"cpu": "200m", "memory": "150Mi"}}
     and container(d)["image"] == "registry.example/pycdi:v1"),
    ("env merged by name: one changed, one added, one deleted", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "cdi-deployment", "env": [
         {"name": "HOME", "value": "/home/cdi"}, {"name": "GOMAXPROCS", "value": "2"},
         {"name": "PYTHONDONTWRITEBYTECODE", "$patch": "delete"}]}]}}}},
     lambda d: env(d) == [(n, "/home/cdi" if n == "HOME" else v) for n, v in CONTROLLER_ENV
                          if n != "PYTHONDONTWRITEBYTECODE"] + [("GOMAXPROCS", "2")]),
    ("a volume and its mount added by name and mountPath", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {
         "volumes": [{"name": "ca", "configMap": {"name": "my-ca"}}],
         "containers": [{"name": "cdi-deployment", "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}]}]}}}},
     lambda d: [v["name"] for v in d["spec"]["template"]["spec"]["volumes"]] == ["ca", "tmp"]
     and [m["mountPath"] for m in container(d)["volumeMounts"]] == ["/etc/ca", "/tmp"]),
    ("a container port merged by containerPort", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "cdi-deployment", "ports": [
         {"containerPort": 8080, "name": "metrics", "hostPort": 18080}, {"containerPort": 9000, "name": "debug"}]}]}}}},
     lambda d: [(p["containerPort"], p.get("hostPort")) for p in container(d)["ports"]] == [(8080, 18080),
                                                                                         (9000, None)]),
    ("a sidecar container appended, the component's own kept", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "kube-rbac-proxy:v1"}]}}}},
     lambda d: [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["proxy", "cdi-deployment"]),
    ("an affinity replaced wholesale where it has no strategy (a strategic affinity patch)", "Deployment",
     "cdi-deployment",
     {"spec": {"template": {"spec": {"affinity": {"podAntiAffinity": {
         "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
             "labelSelector": {"matchLabels": {"cdi.kubevirt.io": "cdi-deployment"}},
             "topologyKey": "kubernetes.io/hostname"}}]}}}}}},
     lambda d: d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
         "preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100),
    ("tolerations have no merge key: the list is replaced", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}}},
     lambda d: d["spec"]["template"]["spec"]["tolerations"] == [{"key": "a", "operator": "Exists"}]),
    ("args have no merge key: replaced", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "cdi-deployment", "args": ["controller", "-v", "3"]}]}}}},
     lambda d: container(d)["args"] == ["controller", "-v", "3"]),
    ("null deletes a key; a label added beside the others", "Deployment", "cdi-deployment",
     {"metadata": {"labels": {"team": "storage"}},
      "spec": {"template": {"spec": {"nodeSelector": None}}}},
     lambda d: "nodeSelector" not in d["spec"]["template"]["spec"]
     and d["metadata"]["labels"]["team"] == "storage" and len(d["metadata"]["labels"]) > 1),
    ("$patch: replace on a map", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"securityContext": {"$patch": "replace", "runAsNonRoot": True}}}}},
     lambda d: d["spec"]["template"]["spec"]["securityContext"] == {"runAsNonRoot": True}),
    ("$patch: replace as an item, with or without a key, replaces the whole keyed list", "Deployment",
     "cdi-deployment",
     {"spec": {"template": {"spec": {"volumes": [{"name": "tmp", "$patch": "replace"},
                                                 {"name": "scratch", "emptyDir": {}}]}}}},
     lambda d: d["spec"]["template"]["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]),
    ("$patch: replace as a bare item", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"containers": [{"name": "cdi-deployment", "env": [
         {"$patch": "replace"}, {"name": "ONLY", "value": "1"}]}]}}}},
     lambda d: env(d) == [("ONLY", "1")]),
    ("$patch: delete on a map empties it", "Deployment", "cdi-deployment",
     {"spec": {"template": {"spec": {"securityContext": {"$patch": "delete"}}}}},
     lambda d: d["spec"]["template"]["spec"]["securityContext"] == {}),
    ("$retainKeys keeps only the listed keys (a Deployment's strategy)", "Deployment", "cdi-deployment+strategy",
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     lambda d: d["spec"]["strategy"] == {"type": "Recreate"}),
    ("finalizers: a scalar list merged as a union, $deleteFromPrimitiveList removes", "Service",
     "cdi-api+finalizers",
     {"metadata": {"finalizers": ["example.org/new", "example.org/keep"],
                   "$deleteFromPrimitiveList/finalizers": ["example.org/old"]}},
     lambda d: d["metadata"]["finalizers"] == ["example.org/new", "example.org/keep"]),
    ("a Service port merged by port", "Service", "cdi-api",
     {"spec": {"ports": [{"port": 443, "name": "https", "nodePort": 30443}]}},
     lambda d: d["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP",
                                       "nodePort": 30443}]),
    ("a webhook merged by name", "ValidatingWebhookConfiguration", "cdi-api-datavolume-validate",
     {"webhooks": [{"name": "datavolume-validate.cdi.kubevirt.io", "timeoutSeconds": 5}]},
     lambda d: d["webhooks"][0]["timeoutSeconds"] == 5 and "clientConfig" in d["webhooks"][0]),
    ("a ConfigMap's data merged", "ConfigMap", "cdi-apiserver-signer-bundle",
     {"data": {"extra.crt": "x"}},
     lambda d: set(d["data"]) == {"ca-bundle.crt", "extra.crt"}),
    ("a ClusterRole's rules have no merge key: replaced", "ClusterRole", "cdi.kubevirt.io:config-reader",
     {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
     lambda d: d["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
]


@pytest.mark.parametrize(("what", "kind", "name", "patch", "check"), CASES, ids=[c[0] for c in CASES])
def test_strategic_merge(what: str, kind: str, name: str, patch: Obj, check: Any) -> None:
    assert check(strategic_merge(rendered(kind, name), patch)), what


def kubectl() -> Path:
    try:
        return kube_binaries() / "kubectl"
    except KubeBinariesUnavailable as unavailable:
        pytest.skip(str(unavailable))


@pytest.mark.parametrize(("what", "kind", "name", "patch", "check"), CASES, ids=[c[0] for c in CASES])
def test_kubernetes_merges_the_same(tmp_path: Path, what: str, kind: str, name: str, patch: Obj, check: Any) -> None:
    original = rendered(kind, name)
    (tmp_path / "object.json").write_text(json.dumps(original))
    done = subprocess.run([str(kubectl()), "patch", "--local", "-f", str(tmp_path / "object.json"), "--type",
                           "strategic", "-p", json.dumps(patch), "-o", "json", "--kubeconfig", "/dev/null"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert strategic_merge(original, patch) == json.loads(done.stdout), what


@pytest.mark.parametrize(("kind", "name", "patch", "message"), [
    ("Deployment", "cdi-deployment", {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
     "does not contain declared merge key: name"),
    ("Deployment", "cdi-deployment", {"spec": {"$patch": "merge-ish"}}, "unknown patch type: 'merge-ish'"),
    ("Deployment", "cdi-deployment", {"$patch": "delete"}, "deletes the whole object"),
    ("Deployment", "cdi-deployment", {"spec": {"template": {"spec": {"containers": [
        {"name": "cdi-deployment", "$patch": "merge"}]}}}}, "merging lists cannot yet be specified in the patch"),
    ("Deployment", "cdi-deployment", {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}},
     "does not contain declared merge key: name"),
    ("Deployment", "cdi-deployment", {"spec": {"$bogus": 1}}, "unknown directive '\\$bogus'"),
    ("Deployment", "cdi-deployment", ["not", "a", "map"], "must be a JSON object"),
    ("PrometheusRule", "prometheus-cdi-rules", {"spec": {}}, "not supported for PrometheusRule"),
])
def test_what_cannot_be_merged_is_refused(kind: str, name: str, patch: Any, message: str) -> None:
    with pytest.raises(StrategicMergeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        strategic_merge(rendered(kind, name), patch)
