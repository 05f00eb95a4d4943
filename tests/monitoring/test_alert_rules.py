"""CDI's alerts evaluated against what `/metrics` serves: each scenario is a cluster state rendered by the
state collector exactly as a scrape sees it (plus Prometheus' own `up` where a rule reads it), parsed back,
run through the PrometheusRule's recording rules, then each alert's expression (`tests/monitoring/promql`,
an instant evaluation: `for` is not waited for). An alert fires when its expression selects anything."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cdi.contracts import annotations as ann
from cdi.contracts import metrics as m
from cdi.controllers.capabilities import UNSUPPORTED_PROVISIONERS
from cdi.install.alerts import ALERTS, recording_rules
from cdi.monitoring import ControlPlaneMetrics
from cdi.monitoring.collector import StateCollector
from cdi.monitoring.state import ObservedState
from tests.monitoring.promql import Sample, evaluate, parse_exposition, record

NAMESPACE = "cdi"
OPERATOR_UP = [Sample({"__name__": "up", "namespace": NAMESPACE, "pod": "cdi-operator-6d9f-x2"}, 1)]
Obj = dict[str, Any]


def scraped(state: ObservedState, *, outdated: dict[str, bool] | None = None) -> list[Sample]:
    """A scrape of the control plane's page for `state` (worker view on, as `cdi serve` serves it)."""
    registry = CollectorRegistry()
    registry.register(StateCollector(lambda: state, workers=True))
    text = generate_latest(registry).decode()
    if outdated is not None:  # the cron gauge, set by the DataImportCron controller
        metrics = ControlPlaneMetrics()
        for name, pending in outdated.items():
            metrics.set_cron_outdated("default", name, outdated=True, pending=pending)
        text += generate_latest(metrics.registry).decode()
    return parse_exposition(text)


def firing(samples: list[Sample]) -> set[str]:
    rules = [(rule.name, rule.expr) for rule in recording_rules(NAMESPACE)]
    db = record(rules, samples)
    return {alert.name for alert in ALERTS if evaluate(alert.expr, db)}


def sc(name: str, provisioner: str = "rbd.csi.ceph.com", **annotations: str) -> Obj:
    return {"metadata": {"name": name, "annotations": annotations}, "provisioner": provisioner}


def profile(name: str, sets: list[Obj], provisioner: str = "rbd.csi.ceph.com") -> Obj:
    return {"metadata": {"name": name}, "status": {"storageClass": name, "provisioner": provisioner,
                                                   "claimPropertySets": sets}}


RWX = [{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}]
RWO = [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]
VSC = [{"metadata": {"name": "snap"}, "driver": "rbd.csi.ceph.com"}]
DEFAULT = {ann.ANN_DEFAULT_STORAGE_CLASS: "true"}
VIRT = {ann.ANN_DEFAULT_VIRT_STORAGE_CLASS: "true"}
PENDING_DV = {"metadata": {"name": "disk", "namespace": "default"}, "spec": {"storage": {}},
              "status": {"phase": "Pending"}}
READY_CDI = {"metadata": {"name": "cdi"}, "status": {"conditions": [{"type": "Available", "status": "True"}]}}
HEALTHY = ObservedState(storage_classes=[sc("ceph", **DEFAULT)], storage_profiles=[profile("ceph", RWX)],
                        snapshot_classes=VSC, cdis=[READY_CDI], unsupported_provisioners=UNSUPPORTED_PROVISIONERS)


def with_(state: ObservedState, **changes: Any) -> ObservedState:
    return ObservedState(**{**state.__dict__, **changes})


def pod(name: str, container: str, restarts: int) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "status": {"containerStatuses": [{"name": container, "restartCount": restarts}]}}


@pytest.mark.parametrize(("state", "extra", "expected"), [
    (HEALTHY, OPERATOR_UP, set()),
    # no operator pod is up (the embedded control plane has none)
    (HEALTHY, [], {"CDIOperatorDown"}),
    # the CDI resource exists and is not Available; none at all is -1, not "not ready"
    (with_(HEALTHY, cdis=[{"metadata": {"name": "cdi"}, "status": {"conditions": [
        {"type": "Available", "status": "False"}]}}]), OPERATOR_UP, {"CDINotReady"}),
    (with_(HEALTHY, cdis=[]), OPERATOR_UP, set()),
    # a DataVolume waits for a default class and there is none (nor a virt default)
    (with_(HEALTHY, storage_classes=[sc("ceph")], data_volumes=[PENDING_DV]), OPERATOR_UP,
     {"CDINoDefaultStorageClass"}),
    (with_(HEALTHY, storage_classes=[sc("ceph")]), OPERATOR_UP, set()),  # nothing pending: no alert
    (with_(HEALTHY, data_volumes=[PENDING_DV]), OPERATOR_UP, set()),  # a default exists
    (with_(HEALTHY, storage_classes=[sc("ceph", **VIRT)], data_volumes=[PENDING_DV]), OPERATOR_UP, set()),
    # two virt defaults
    (with_(HEALTHY, storage_classes=[sc("ceph", **DEFAULT), sc("a", **VIRT), sc("b", **VIRT)],
           storage_profiles=[profile("ceph", RWX), profile("a", RWX), profile("b", RWX)]), OPERATOR_UP,
     {"CDIMultipleDefaultVirtStorageClasses"}),
    # the default class lacks RWX (degraded); with a healthy virt default beside it, no alert
    (with_(HEALTHY, storage_profiles=[profile("ceph", RWO)]), OPERATOR_UP, {"CDIDefaultStorageClassDegraded"}),
    (with_(HEALTHY, storage_classes=[sc("ceph", **DEFAULT), sc("virt", **VIRT)],
           storage_profiles=[profile("ceph", RWO), profile("virt", RWX)]), OPERATOR_UP, set()),
    # degraded classes that are no default do not count, even when there is no default at all
    (with_(HEALTHY, storage_classes=[sc("ceph")], storage_profiles=[profile("ceph", RWO)]), OPERATOR_UP, set()),
    (with_(HEALTHY, storage_classes=[sc("ceph", **DEFAULT), sc("slow")],
           storage_profiles=[profile("ceph", RWX), profile("slow", RWO)]), OPERATOR_UP, set()),
    # an incomplete profile (no claim property sets for an unknown provisioner)
    (with_(HEALTHY, storage_classes=[sc("ceph", **DEFAULT), sc("odd", "example.org/x")],
           storage_profiles=[profile("ceph", RWX), profile("odd", [], "example.org/x")]), OPERATOR_UP,
     {"CDIStorageProfilesIncomplete"}),
    # an importer container restarted more than three times (kube-state-metrics' counter, as cdi serve serves it)
    (with_(HEALTHY, pods=[pod("importer-disk", "importer", 4)]), OPERATOR_UP, {"CDIDataVolumeUnusualRestartCount"}),
    (with_(HEALTHY, pods=[pod("importer-disk", "importer", 3), pod("cdi-upload-disk", "cdi-upload-server", 2)]),
     OPERATOR_UP, set()),
    (with_(HEALTHY, pods=[pod("uid-1-source-pod", "cdi-clone-source", 5)]), OPERATOR_UP,
     {"CDIDataVolumeUnusualRestartCount"}),
])
def test_alerts_fire_on_scraped_state(state: ObservedState, extra: list[Sample], expected: set[str]) -> None:
    assert firing(scraped(state) + extra) == expected


def test_cron_outdated_only_when_not_pending() -> None:
    assert firing(scraped(HEALTHY, outdated={"fedora": True}) + OPERATOR_UP) == set()
    assert firing(scraped(HEALTHY, outdated={"fedora": False}) + OPERATOR_UP) == {"CDIDataImportCronOutdated"}


def test_incomplete_profile_alert_names_the_class() -> None:
    state = with_(HEALTHY, storage_classes=[sc("ceph", **DEFAULT), sc("odd", "example.org/x")],
                  storage_profiles=[profile("ceph", RWX), profile("odd", [], "example.org/x")])
    alert = next(a for a in ALERTS if a.name == "CDIStorageProfilesIncomplete")
    result = evaluate(alert.expr, scraped(state))
    assert result == [Sample({"storageclass": "odd", "provisioner": "example.org/x"}, 1.0)]


def test_recorded_restart_counts() -> None:
    db = record([(r.name, r.expr) for r in recording_rules(NAMESPACE)],
                scraped(with_(HEALTHY, pods=[pod("importer-a", "importer", 9), pod("importer-b", "importer", 4)])))
    assert [s.value for s in db if s.name == m.IMPORT_PODS_HIGH_RESTART] == [2.0]
    assert [s.value for s in db if s.name == m.UPLOAD_PODS_HIGH_RESTART] == [0.0]
    assert [s.value for s in db if s.name == m.OPERATOR_UP] == [0.0]
