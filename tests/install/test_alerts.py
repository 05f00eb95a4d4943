"""The PrometheusRule and ServiceMonitor `cdi manifests --monitoring` adds: upstream's names, groups, `for`
durations, severities, health impacts, labels and annotations for every alert; every expression is valid
PromQL (parsed with promql_parser, Prometheus' grammar); every metric an expression reads is one CDI
serves, records, or takes from Prometheus itself / kube-state-metrics; without the flag neither kind is
rendered, so a cluster without the prometheus-operator's CRDs installs as before."""

from __future__ import annotations

from typing import Any

import promql_parser
import pytest
import yaml

from cdi.cli.main import main
from cdi.contracts import metrics as m
from cdi.install import InstallOptions, render_all
from cdi.install.alerts import ALERT_GROUP, ALERTS, RECORDING_GROUP, prometheus_rule, recording_rules, service_monitor
from cdi.install.tls import Credentials

NAMESPACE = "cdi"

# Upstream's alerts (pkg/monitoring/rules/alerts/operator.go), as (name, for, severity, operator_health_impact).
UPSTREAM_ALERTS = [
    ("CDIOperatorDown", "10m", "critical", "critical"),
    ("CDINotReady", "10m", "critical", "critical"),
    ("CDIDataVolumeUnusualRestartCount", "5m", "warning", "warning"),
    ("CDIStorageProfilesIncomplete", "5m", "info", "none"),
    ("CDIDataImportCronOutdated", "15m", "warning", "none"),
    ("CDINoDefaultStorageClass", "5m", "warning", "none"),
    ("CDIMultipleDefaultVirtStorageClasses", "5m", "warning", "none"),
    ("CDIDefaultStorageClassDegraded", "5m", "warning", "none"),
]
UPSTREAM_RECORDS = [
    "kubevirt_cdi_operator_up", "cluster:kubevirt_cdi_operator_up:sum",
    "kubevirt_cdi_import_pods_high_restart", "cluster:kubevirt_cdi_import_pods_high_restart:count",
    "kubevirt_cdi_upload_pods_high_restart", "cluster:kubevirt_cdi_upload_pods_high_restart:count",
    "kubevirt_cdi_clone_pods_high_restart", "cluster:kubevirt_cdi_clone_pods_high_restart:count",
]
SERVED = {m.DATAIMPORTCRON_OUTDATED, m.DATAVOLUME_PENDING, m.STORAGEPROFILE_INFO, m.CR_READY}
FROM_PROMETHEUS = {"up", m.POD_RESTARTS}  # Prometheus' own target health; kube-state-metrics (or cdi serve)


def groups() -> dict[str, list[dict[str, Any]]]:
    return {group["name"]: group["rules"] for group in prometheus_rule(NAMESPACE)["spec"]["groups"]}


def test_rule_object() -> None:
    rule = prometheus_rule(NAMESPACE)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert (rule["metadata"]["name"], rule["metadata"]["namespace"]) == ("prometheus-cdi-rules", NAMESPACE)
    assert rule["metadata"]["labels"]["prometheus.cdi.kubevirt.io"] == "true"
    assert list(groups()) == [RECORDING_GROUP, ALERT_GROUP] == ["recordingRules.rules", "alerts.rules"]


def test_alerts_are_upstreams() -> None:
    rules = groups()[ALERT_GROUP]
    assert [(r["alert"], r["for"], r["labels"]["severity"], r["labels"]["operator_health_impact"])
            for r in rules] == UPSTREAM_ALERTS
    for rule in rules:
        assert rule["labels"]["kubernetes_operator_part_of"] == "kubevirt"
        assert rule["labels"]["kubernetes_operator_component"] == "containerized-data-importer"
        assert rule["annotations"]["runbook_url"] == f"https://kubevirt.io/monitoring/runbooks/{rule['alert']}"
        assert rule["annotations"]["summary"]


def test_recording_rules_are_upstreams() -> None:
    records = groups()[RECORDING_GROUP]
    assert [r["record"] for r in records] == UPSTREAM_RECORDS
    by_name = {r["record"]: r["expr"] for r in records}
    assert by_name["cluster:kubevirt_cdi_operator_up:sum"] == \
        "sum(up{namespace='cdi', pod=~'cdi-operator-.*'} or vector(0))"
    assert by_name["cluster:kubevirt_cdi_clone_pods_high_restart:count"] == (
        "count(kube_pod_container_status_restarts_total{pod=~'.*-source-pod', container='cdi-clone-source'} > 3)"
        " or on() vector(0)")
    for deprecated in ("import", "upload", "clone"):  # each alias records the same expression
        assert by_name[f"kubevirt_cdi_{deprecated}_pods_high_restart"] == \
            by_name[f"cluster:kubevirt_cdi_{deprecated}_pods_high_restart:count"]
    assert "namespace='storage'" in recording_rules("storage")[0].expr


def _names(node: Any) -> set[str]:
    """Every metric name a parsed expression selects."""
    if type(node).__name__ == "VectorSelector":
        return {node.name}
    found: set[str] = set()
    for attr in ("lhs", "rhs", "expr"):
        if hasattr(node, attr):
            found |= _names(getattr(node, attr))
    for arg in getattr(node, "args", None) or []:
        found |= _names(arg)
    return found


@pytest.mark.parametrize("expr", [r["expr"] for group in groups().values() for r in group])
def test_every_expression_is_promql_over_known_metrics(expr: str) -> None:
    parsed = promql_parser.parse(expr)  # raises on a syntax error
    known = SERVED | FROM_PROMETHEUS | set(UPSTREAM_RECORDS)
    assert _names(parsed) <= known, _names(parsed) - known


def test_alerts_read_the_cluster_recording_rules() -> None:
    exprs = {alert.name: alert.expr for alert in ALERTS}
    assert exprs["CDIOperatorDown"] == "cluster:kubevirt_cdi_operator_up:sum == 0"
    assert _names(promql_parser.parse(exprs["CDIDataVolumeUnusualRestartCount"])) == {
        m.IMPORT_PODS_HIGH_RESTART, m.UPLOAD_PODS_HIGH_RESTART, m.CLONE_PODS_HIGH_RESTART}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    monitor = service_monitor(NAMESPACE)
    assert (monitor["kind"], monitor["metadata"]["name"]) == ("ServiceMonitor", "service-monitor-cdi")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "scheme": "http", "path": "/metrics"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["selector"] == {"matchLabels": {"prometheus.cdi.kubevirt.io": "true"}}  # as upstream


def test_only_with_monitoring(creds: Credentials) -> None:
    plain = render_all(InstallOptions(creds, NAMESPACE))
    assert not {d["kind"] for d in plain} & {"PrometheusRule", "ServiceMonitor"}
    full = render_all(InstallOptions(creds, NAMESPACE, monitoring=True))
    assert full[:-2] == plain  # the same install, the monitoring objects last
    assert [d["kind"] for d in full[-2:]] == ["PrometheusRule", "ServiceMonitor"]


def test_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["manifests", "--monitoring", "--namespace", "storage"])
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    rule = documents[-2]
    assert (rule["kind"], rule["metadata"]["namespace"]) == ("PrometheusRule", "storage")
    assert "namespace='storage'" in rule["spec"]["groups"][0]["rules"][0]["expr"]
