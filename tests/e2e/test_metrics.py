"""The control plane's `/metrics` end to end: `cdi serve --metrics-port 0` logs where it serves, and a
scrape shows `kubevirt_cdi_dataimportcron_outdated` for a registry cron whose image is not pushed yet
(outdated, not pending: the embedded default StorageClass is known), then 0 once the pushed image is
imported, and no series once the cron is deleted. Schedules are `@every 2s`, as in test_dataimportcron.
The page, parsed with prometheus_client's parser, has upstream's control-plane metrics (names, types,
labels) and controller-runtime's reconcile and work-queue series, which move as a DataVolume is imported;
an importer that keeps failing shows its restarts as kube-state-metrics would, and the PrometheusRule's
recording rules and alerts, evaluated over that very page, raise CDIDataVolumeUnusualRestartCount;
`kubevirt_cdi_cr_ready` reads 1 once the embedded operator has made an applied CDI resource Available.
`cdi controller` against a real API server serves the same page on its health listener.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdi.install.alerts import ALERTS, recording_rules
from cdi.monitoring.state import cr_ready
from tests.e2e.test_dataimportcron import cron, insecure, push
from tests.monitoring.promql import evaluate, parse_exposition, record
from tests.support.controlplane import ControlPlane, release_storage
from tests.support.kubecluster import KubeCluster
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.slow
SERIES = 'kubevirt_cdi_dataimportcron_outdated{cron_name="tiny-cron",namespace="default",pending="false"}'


class MetricsControlPlane(ControlPlane):
    """`cdi serve` with `--metrics-port 0`; `metrics_url` read from its log."""

    metrics_url = ""

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(Path(sys.executable).with_name("cdi")), "serve", "--pod-runtime", "process", "--pod-backoff", str(self.pod_backoff),
                                             "--uploadproxy-port", "0", "--metrics-port", "0"],
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            found = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", self.log.read_text())
            if found and self.cdi("get", "cdiconfig", "config", "-o", "json", check=False).returncode == 0:
                self.metrics_url = found.group(1)
                return
            time.sleep(0.2)
        raise AssertionError(f"cdi serve did not become ready:\n{self.log.read_text()}")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[MetricsControlPlane]:
    control_plane = MetricsControlPlane(tmp_path / "home")
    control_plane.start()
    try:
        yield control_plane
    finally:
        control_plane.stop()
        release_storage(control_plane.home)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", tmp_path / "registry-work") as server:
        yield server


def sample(text: str) -> float | None:
    found = re.search(re.escape(SERIES) + r" (\S+)", text)
    return float(found.group(1)) if found else None


def test_dataimportcron_outdated_is_scraped(plane: MetricsControlPlane, registry: RegistryServer) -> None:
    assert "# TYPE kubevirt_cdi_dataimportcron_outdated gauge" in plane.scrape()
    plane.apply(insecure(registry) + "---\n" + cron(
        "tiny-cron", {"registry": {"url": f"docker://{registry.host}/disks/tiny:latest"}}))
    # Nothing pushed yet: the poll fails, the cron is outdated, and not pending (a default class exists).
    plane.wait_for(lambda: sample(plane.scrape()) == 1, "the cron to be reported outdated", timeout=30)
    push(registry, "disks/tiny", b"tiny-image")
    plane.wait_for(lambda: sample(plane.scrape()) == 0, "the cron to be reported up to date", timeout=60)
    plane.cdi("delete", "dataimportcron", "tiny-cron")
    plane.wait_for(lambda: 'cron_name="tiny-cron"' not in plane.scrape(), "the series to go", timeout=30)


BLANK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: blank
spec:
  source:
    blank: {}
  storage:
    resources:
      requests:
        storage: 64Mi
"""
# Upstream's control-plane metrics (doc/metrics.md) and the types they have there, plus what cdi serve
# reports for its worker processes (their progress counters, kube-state-metrics' restart counter).
UPSTREAM_TYPES = {"kubevirt_cdi_dataimportcron_outdated": "gauge", "kubevirt_cdi_datavolume_pending": "gauge",
                  "kubevirt_cdi_storageprofile_info": "gauge", "kubevirt_cdi_cr_ready": "gauge",
                  "kubevirt_cdi_import_progress": "counter", "kubevirt_cdi_clone_progress": "counter",
                  "kube_pod_container_status_restarts": "counter"}
RUNTIME_TYPES = {"controller_runtime_reconcile": "counter", "controller_runtime_reconcile_errors": "counter",
                 "controller_runtime_reconcile_time_seconds": "histogram",
                 "controller_runtime_max_concurrent_reconciles": "gauge", "controller_runtime_active_workers": "gauge",
                 "workqueue_depth": "gauge", "workqueue_adds": "counter", "workqueue_retries": "counter",
                 "workqueue_queue_duration_seconds": "histogram", "workqueue_work_duration_seconds": "histogram",
                 "workqueue_unfinished_work_seconds": "gauge", "workqueue_longest_running_processor_seconds": "gauge"}


def reconciles(text: str, controller: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "controller_runtime_reconcile_total" and sample.labels["controller"] == controller)


def test_upstream_metrics_are_served_and_move(plane: MetricsControlPlane) -> None:
    before = plane.scrape()
    families = {family.name: family for family in text_string_to_metric_families(before)}
    assert {name: families[name].type for name in UPSTREAM_TYPES if name in families} == UPSTREAM_TYPES
    assert {name: families[name].type for name in RUNTIME_TYPES if name in families} == RUNTIME_TYPES
    profiles = [sample.labels for sample in families["kubevirt_cdi_storageprofile_info"].samples]
    assert profiles and all(set(labels) == {"storageclass", "provisioner", "complete", "default", "virtdefault",
                                            "rwx", "smartclone", "degraded"} for labels in profiles)
    assert any(labels["default"] == "true" for labels in profiles)  # the embedded default class
    # -1 without a CDI resource (upstream's "not initialised"), else its Available condition
    listed = plane.cdi("get", "cdi", "-o", "json", check=False)
    cdis = json.loads(listed.stdout).get("items", []) if listed.returncode == 0 and listed.stdout.strip() else []
    assert [sample.value for sample in families["kubevirt_cdi_cr_ready"].samples] == [cr_ready(cdis)]
    assert [sample.value for sample in families["kubevirt_cdi_datavolume_pending"].samples] == [0]

    plane.apply(BLANK)
    plane.wait_for(lambda: ((plane.get("dv", "blank") or {}).get("status") or {}).get("phase") == "Succeeded",
                   "the blank DataVolume to succeed")
    plane.wait_for(lambda: reconciles(plane.scrape(), "datavolume-import-controller")
                   > reconciles(before, "datavolume-import-controller"), "the import controller's reconciles to move")
    after = plane.scrape()
    assert reconciles(after, "import-controller") > reconciles(before, "import-controller")
    assert 'workqueue_adds_total{controller="datavolume-import-controller",name="datavolume-import-controller"}' \
        in after


FAILING = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: failing
spec:
  source:
    http:
      url: http://127.0.0.1:9/disk.img
  storage:
    resources:
      requests:
        storage: 64Mi
"""


def importer_restarts(text: str) -> float:
    return max((s.value for s in parse_exposition(text) if s.name == "kube_pod_container_status_restarts_total"
                and s.labels.get("pod") == "importer-failing" and s.labels.get("container") == "importer"),
               default=0.0)


def test_restart_alert_from_a_scrape(plane: MetricsControlPlane) -> None:
    plane.apply(FAILING)  # nothing listens on port 9: the importer fails and is restarted with backoff
    plane.wait_for(lambda: importer_restarts(plane.scrape()) > 3, "more than three importer restarts", timeout=180)
    db = record([(rule.name, rule.expr) for rule in recording_rules("cdi")], parse_exposition(plane.scrape()))
    assert [s.value for s in db if s.name == "cluster:kubevirt_cdi_import_pods_high_restart:count"] == [1]
    fired = {alert.name for alert in ALERTS if evaluate(alert.expr, db)}
    # Besides the restarts: no `cdi-operator` pod is up (embedded mode has no operator). The embedded
    # default class has no ReadWriteMany but is not degraded: one machine is upstream's single-node case.
    assert fired == {"CDIDataVolumeUnusualRestartCount", "CDIOperatorDown"}


def cr_ready_value(text: str) -> float | None:
    return next((s.value for s in parse_exposition(text) if s.name == "kubevirt_cdi_cr_ready"), None)


def test_cr_ready_follows_the_cdi_resource(plane: MetricsControlPlane) -> None:
    """cdi serve reconciles a CDI resource itself (its embedded operator): the gauge reads -1 before there is
    one, then 1 once it is Available, as upstream's operator sets it."""
    assert cr_ready_value(plane.scrape()) == -1
    plane.apply("apiVersion: cdi.kubevirt.io/v1beta1\nkind: CDI\nmetadata:\n  name: cdi\nspec: {}\n")
    plane.wait_for(lambda: cr_ready_value(plane.scrape()) == 1, "kubevirt_cdi_cr_ready to read 1", timeout=60)
    db = record([(rule.name, rule.expr) for rule in recording_rules("cdi")], parse_exposition(plane.scrape()))
    assert "CDINotReady" not in {alert.name for alert in ALERTS if evaluate(alert.expr, db)}


def test_cdi_controller_serves_metrics_on_its_health_port(kube_api_only: KubeCluster, tmp_path: Path) -> None:
    """`cdi controller`'s default: `/metrics` beside `/healthz` on the health listener (upstream's 8080;
    here `--health-port 0`)."""
    log = tmp_path / "controller.log"
    with log.open("ab") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("cdi")), "controller", "--kubeconfig",
                                    str(kube_api_only.kubeconfig_path), "--namespace", "default", "--health-port", "0",
                                    "--no-leader-elect"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, found = time.monotonic() + 30, None
        while found is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            found = re.search(r"health on :(\d+), metrics on :(\d+)", log.read_text())
            time.sleep(0.2)
        assert found is not None and found.group(1) == found.group(2), log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/metrics", timeout=5) as response:
            page = response.read().decode()
        assert "# TYPE kubevirt_cdi_dataimportcron_outdated gauge" in page
        assert "# TYPE kubevirt_cdi_storageprofile_info gauge" in page
        assert 'controller_runtime_reconcile_total{controller="datavolume-import-controller",result="success"}' in page
        assert "kube_pod_container_status_restarts_total" not in page  # kube-state-metrics reports pods there
    finally:
        process.terminate()
        process.wait(30)
