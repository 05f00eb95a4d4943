"""`cdi operator`'s metrics and how Prometheus finds them: its registry (`cdi.monitoring.operator`) parsed
back with prometheus_client's parser; the rendered objects (the operator's Deployment from
`cdi operator --print-manifests`, the install's `cdi-prometheus-metrics` Service and the ServiceMonitor of
`--monitoring`) resolved as the prometheus-operator resolves them into scrape targets; and `CDIOperatorDown`
evaluated over the `up` series those targets give (`tests/monitoring/promql`). The same page scraped from
a running `cdi operator` on a real API server: tests/e2e/test_kubernetes_operator.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cdi.contracts import deployment as dep
from cdi.contracts import metrics as m
from cdi.install import InstallOptions, render_all
from cdi.install.alerts import ALERTS, recording_rules
from cdi.install.operatorbundle import OPERATOR_HEALTH_PORT, operator_bundle
from cdi.install.tls import credentials
from cdi.monitoring import OperatorMetrics
from tests.monitoring.promql import Sample, evaluate, record

NAMESPACE = "cdi"
Obj = dict[str, Any]
AVAILABLE = {"metadata": {"name": "cdi"}, "status": {"conditions": [{"type": "Available", "status": "True"}]}}
DEPLOYING = {"metadata": {"name": "cdi"}, "status": {"conditions": [{"type": "Available", "status": "False"}]}}


def families(metrics: OperatorMetrics) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}


def test_the_operator_serves_upstreams_operator_series_and_its_controllers_runtime_series() -> None:
    metrics = OperatorMetrics(lambda: [AVAILABLE])
    # What the manager does for the operator's one controller (cdi.runtime.manager.Manager.add).
    metrics.runtime.reconciles("cdi-operator").workers(1)
    metrics.runtime.workqueue("cdi-operator", lambda: [])
    found = families(metrics)
    assert {m.CR_READY, "controller_runtime_reconcile", "controller_runtime_reconcile_errors",
            "controller_runtime_reconcile_time_seconds", "controller_runtime_max_concurrent_reconciles",
            "controller_runtime_active_workers", "workqueue_depth", "workqueue_adds",
            "process_cpu_seconds"} <= set(found)
    assert [(s.labels, s.value) for s in found[m.CR_READY].samples] == [({}, 1.0)]
    assert metrics.value("controller_runtime_max_concurrent_reconciles", {"controller": "cdi-operator"}) == 1.0
    assert metrics.value("workqueue_depth", {"name": "cdi-operator", "controller": "cdi-operator",
                                             "priority": ""}) == 0.0


@pytest.mark.parametrize(("cdis", "ready"), [([], -1.0), ([DEPLOYING], 0.0), ([AVAILABLE], 1.0)])
def test_cr_ready_is_read_from_the_cdi_resources_at_each_scrape(cdis: list[Obj], ready: float) -> None:
    assert OperatorMetrics(lambda: cdis).value(m.CR_READY) == ready


# --- service discovery over the rendered objects ------------------------------------------------------------

def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return selector.items() <= labels.items()


def scrape_targets(documents: Sequence[Obj]) -> list[tuple[str, int]]:
    """(Deployment, container port) of every pod the ServiceMonitor's endpoints reach: Services it selects by
    label in its namespaces, their ports named as its endpoints, the pods those Services select, and the
    container port the Service's targetPort names (or numbers)."""
    (monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    spec = monitor["spec"]
    found = []
    for service in (d for d in documents if d["kind"] == "Service"):
        if service["metadata"]["namespace"] not in spec["namespaceSelector"]["matchNames"] or \
                not _selects(spec["selector"]["matchLabels"], service["metadata"]["labels"]):
            continue
        for endpoint in spec["endpoints"]:
            for port in (p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]):
                for deployment in (d for d in documents if d["kind"] == "Deployment"):
                    template = deployment["spec"]["template"]
                    if not _selects(service["spec"]["selector"], template["metadata"]["labels"]):
                        continue
                    for container_port in (p for c in template["spec"]["containers"] for p in c["ports"]):
                        if port["targetPort"] in (container_port["containerPort"], container_port.get("name")):
                            found.append((deployment["metadata"]["name"], container_port["containerPort"]))
    return sorted(found)


@pytest.fixture(scope="module")
def installed() -> list[Obj]:
    install = render_all(InstallOptions(credentials(NAMESPACE, datetime.now(UTC)), NAMESPACE, monitoring=True))
    return [*operator_bundle(NAMESPACE, "registry.example/pycdi:v1"), *install]


def test_prometheus_scrapes_the_operator_and_the_controller_where_they_serve_metrics(installed: list[Obj]) -> None:
    assert scrape_targets(installed) == [("cdi-deployment", dep.HEALTH_PORT), ("cdi-operator", OPERATOR_HEALTH_PORT)]
    operator = next(d for d in installed if d["kind"] == "Deployment" and d["metadata"]["name"] == "cdi-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    # `cdi operator` serves /metrics on its health port unless told otherwise, and the Deployment does not.
    assert args[args.index("--health-port") + 1] == str(OPERATOR_HEALTH_PORT) and "--metrics-port" not in args


def up(target: str, value: float) -> Sample:
    """Prometheus' `up` for a scrape target: the pod's name is its Deployment's plus the ReplicaSet's hash and
    the pod's suffix, as the Deployment controller names them."""
    return Sample({"__name__": "up", "namespace": NAMESPACE, "service": dep.METRICS_SERVICE, "endpoint": "metrics",
                   "pod": f"{target}-6d9f8b7c5-x2kqz", "job": dep.METRICS_SERVICE}, value)


def operator_down(samples: list[Sample]) -> bool:
    db = record([(rule.name, rule.expr) for rule in recording_rules(NAMESPACE)], samples)
    alert = next(a for a in ALERTS if a.name == "CDIOperatorDown")
    return bool(evaluate(alert.expr, db))


@pytest.mark.parametrize(("up_by_target", "fires"), [
    ({}, True),  # no target at all (no operator pod, or nothing selects it)
    ({"cdi-deployment": 1.0}, True),  # only the controller is up
    ({"cdi-deployment": 1.0, "cdi-operator": 0.0}, True),  # the operator's pod exists but its scrape fails
    ({"cdi-deployment": 1.0, "cdi-operator": 1.0}, False),
    ({"cdi-deployment": 0.0, "cdi-operator": 1.0}, False),  # the controller down is another matter
])
def test_cdi_operator_down_fires_without_an_operator_target_up(installed: list[Obj], up_by_target: dict[str, float],
                                                              fires: bool) -> None:
    discovered = {name for name, _port in scrape_targets(installed)}
    assert set(up_by_target) <= discovered
    assert operator_down([up(target, value) for target, value in up_by_target.items()]) is fires
