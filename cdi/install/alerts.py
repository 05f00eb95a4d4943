"""CDI's Prometheus rules and scrape target: upstream's PrometheusRule `prometheus-cdi-rules` and
ServiceMonitor `service-monitor-cdi` (monitoring.coreos.com/v1, the prometheus-operator's kinds).

`prometheus_rule` renders upstream's recording rules (pkg/monitoring/rules/recordingrules: the
`cluster:` names and their deprecated aliases, over `up` and kube-state-metrics'
`kube_pod_container_status_restarts_total`) in the group `recordingRules.rules`, and upstream's alerts
(pkg/monitoring/rules/alerts) in `alerts.rules`, each with its `for`, `severity` and
`operator_health_impact`, the labels upstream adds to every alert (`kubernetes_operator_part_of`,
`kubernetes_operator_component`) and the annotations `summary` and `runbook_url`. The alerts query the
`cluster:` recording rules, as the reference describes upstream after the rename.

Upstream's operator creates these only where the prometheus-operator's CRDs exist. A plain `kubectl
apply` cannot ask, so `cdi manifests` leaves them out unless `--monitoring` is given (then they come
last, after everything the install itself needs): an apply on a cluster without those CRDs fails on
exactly these two documents and nothing else. `monitoring_objects` is what that flag adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts import deployment as dep
from cdi.contracts import metrics as m
from cdi.install.objects import Object, document, metadata

MONITORING_API = "monitoring.coreos.com/v1"
RULE_NAME = "prometheus-cdi-rules"
SERVICE_MONITOR_NAME = "service-monitor-cdi"
PROMETHEUS_LABEL = "prometheus.cdi.kubevirt.io"  # upstream's common.PrometheusLabelKey ("true")
RUNBOOK_URL = "https://kubevirt.io/monitoring/runbooks/{}"  # upstream's default RUNBOOK_URL_TEMPLATE
OPERATOR_POD_PREFIX = "cdi-operator-"  # upstream's operator Deployment `cdi-operator`
RECORDING_GROUP, ALERT_GROUP = "recordingRules.rules", "alerts.rules"


@dataclass(frozen=True)
class Record:
    name: str
    expr: str
    help: str  # upstream's metric help (documentation only; a recording rule has no help field)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str  # the rule's `for`
    severity: str
    health_impact: str  # operator_health_impact
    summary: str


def _high_restart(pod_pattern: str, container: str) -> str:
    return (f"count(kube_pod_container_status_restarts_total{{pod=~'{pod_pattern}', container='{container}'}} "
            f"> {m.UNUSUAL_RESTART_COUNT_THRESHOLD}) or on() vector(0)")


def recording_rules(namespace: str) -> list[Record]:
    operator_up = f"sum(up{{namespace='{namespace}', pod=~'{OPERATOR_POD_PREFIX}.*'}} or vector(0))"
    restarts = [
        ("import", _high_restart("importer-.*", ann.Component.IMPORTER.value), "import pods"),
        ("upload", _high_restart("cdi-upload-.*", ann.Component.UPLOAD_SERVER.value), "upload server pods"),
        ("clone", _high_restart(".*-source-pod", cp.CONTAINER_NAME), "clone pods"),
    ]
    rules = [Record("kubevirt_cdi_operator_up", operator_up, "[Deprecated] CDI operator status"),
             Record(m.OPERATOR_UP, operator_up, "The number of CDI pods that are up")]
    for kind, expr, pods in restarts:
        helped = f"The number of CDI {pods} with high restart count"
        rules += [Record(f"kubevirt_cdi_{kind}_pods_high_restart", expr, f"[Deprecated] {helped}"),
                  Record(f"cluster:kubevirt_cdi_{kind}_pods_high_restart:count", expr, helped)]
    return rules


_PROFILE = m.STORAGEPROFILE_INFO
ALERTS: tuple[Alert, ...] = (
    Alert("CDIOperatorDown", f"{m.OPERATOR_UP} == 0", "10m", "critical", "critical", "CDI operator is down"),
    Alert("CDINotReady", f"{m.CR_READY} == 0", "10m", "critical", "critical", "CDI is not available to use"),
    Alert("CDIDataVolumeUnusualRestartCount",
          f"{m.IMPORT_PODS_HIGH_RESTART} > 0 or {m.UPLOAD_PODS_HIGH_RESTART} > 0 or {m.CLONE_PODS_HIGH_RESTART} > 0",
          "5m", "warning", "warning", "Some CDI population workloads have an unusual restart count, meaning they are "
          "probably failing and need to be investigated"),
    Alert("CDIStorageProfilesIncomplete", f'sum by(storageclass,provisioner) (({_PROFILE}{{complete="false"}}>0))',
          "5m", "info", "none", "Incomplete StorageProfile {{ $labels.storageclass }}, accessMode/volumeMode cannot "
          "be inferred by CDI for PVC population request"),
    Alert("CDIDataImportCronOutdated",
          f'sum by(namespace,cron_name) ({m.DATAIMPORTCRON_OUTDATED}{{pending="false"}}) > 0', "15m", "warning",
          "none", "DataImportCron (recurring polling of VM templates disk image sources, also known as golden "
          "images) PVCs are not being updated on the defined schedule"),
    Alert("CDINoDefaultStorageClass",
          f'sum({_PROFILE}{{default="true"}} or on() vector(0)) + '
          f'sum({_PROFILE}{{virtdefault="true"}} or on() vector(0)) + '
          f"(count({m.DATAVOLUME_PENDING} == 0) or on() vector(0)) == 0", "5m", "warning", "none",
          "No default StorageClass or virtualization StorageClass, and a DataVolume is pending for one"),
    Alert("CDIMultipleDefaultVirtStorageClasses", f'sum({_PROFILE}{{virtdefault="true"}} or on() vector(0)) > 1',
          "5m", "warning", "none", "More than one default virtualization StorageClass detected"),
    Alert("CDIDefaultStorageClassDegraded",
          f'sum({_PROFILE}{{default="true",degraded="false"}} or on() vector(0)) + '
          f'sum({_PROFILE}{{virtdefault="true",degraded="false"}} or on() vector(0)) + '
          f'on () (0*(sum({_PROFILE}{{default="true"}}) or sum({_PROFILE}{{virtdefault="true"}}))) == 0',
          "5m", "warning", "none", "Default storage class has no smart clone or ReadWriteMany"),
)


def alert_rule(alert: Alert) -> Object:
    return {"alert": alert.name, "expr": alert.expr, "for": alert.duration,
            "annotations": {"summary": alert.summary, "runbook_url": RUNBOOK_URL.format(alert.name)},
            "labels": {"severity": alert.severity, "operator_health_impact": alert.health_impact,
                       "kubernetes_operator_part_of": "kubevirt",
                       "kubernetes_operator_component": ann.APP_NAME}}


def _meta(name: str, namespace: str) -> Object:
    return metadata(name, namespace, extra_labels={dep.COMPONENT_LABEL: "", PROMETHEUS_LABEL: "true"})


def prometheus_rule(namespace: str) -> Object:
    records = [{"record": rule.name, "expr": rule.expr} for rule in recording_rules(namespace)]
    return document(MONITORING_API, "PrometheusRule", _meta(RULE_NAME, namespace),
                    spec={"groups": [{"name": RECORDING_GROUP, "rules": records},
                                     {"name": ALERT_GROUP, "rules": [alert_rule(alert) for alert in ALERTS]}]})


def service_monitor(namespace: str) -> Object:
    """Scrape `/metrics` of every pod behind the Services labelled as upstream labels `cdi-prometheus-metrics`
    (`prometheus.cdi.kubevirt.io: "true"`): the controller's and the operator's, whose `up` series
    `cluster:kubevirt_cdi_operator_up:sum` counts."""
    return document(MONITORING_API, "ServiceMonitor", _meta(SERVICE_MONITOR_NAME, namespace),
                    spec={"namespaceSelector": {"matchNames": [namespace]},
                          "selector": {"matchLabels": {PROMETHEUS_LABEL: "true"}},
                          "endpoints": [{"port": "metrics", "scheme": "http", "path": m.METRICS_PATH}]})


def monitoring_objects(namespace: str) -> list[Object]:
    return [prometheus_rule(namespace), service_monitor(namespace)]
