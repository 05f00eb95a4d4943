"""The control plane's `/metrics` end to end: `cdi serve --metrics-port 0` logs where it serves, and a
scrape shows `kubevirt_cdi_dataimportcron_outdated` for a registry cron whose image is not pushed yet
(outdated, not pending: the embedded default StorageClass is known), then 0 once the pushed image is
imported, and no series once the cron is deleted. Schedules are `@every 2s`, as in test_dataimportcron.
`cdi controller` against a real API server serves the same page on its health listener.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_dataimportcron import cron, insecure, push
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
            self.process = subprocess.Popen([str(Path(sys.executable).with_name("cdi")), "serve", "--pod-backoff", str(self.pod_backoff),
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
            assert "# TYPE kubevirt_cdi_dataimportcron_outdated gauge" in response.read().decode()
    finally:
        process.terminate()
        process.wait(30)
