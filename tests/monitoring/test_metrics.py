"""The process's metrics registry and its `/metrics` endpoint: one series per cron (a change of `pending`
replaces it), dropped on deletion; served over HTTP in the text format Prometheus scrapes; registries
of two processes are independent."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest

from cdi.cli.controller import ControllerCommand, _listeners
from cdi.contracts import metrics as m
from cdi.monitoring import ControlPlaneMetrics, MetricsServer, metrics_handler
from cdi.runtime.health import HealthServer
from cdi.runtime.manager import Manager


def labels(name: str, pending: str, namespace: str = "default") -> dict[str, str]:
    return {m.LABEL_NAMESPACE: namespace, m.LABEL_CRON_NAME: name, m.LABEL_PENDING: pending}


def test_one_series_per_cron_and_forget() -> None:
    metrics = ControlPlaneMetrics()
    metrics.set_cron_outdated("default", "fedora-cron", outdated=True, pending=True)
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("fedora-cron", "true")) == 1
    metrics.set_cron_outdated("default", "fedora-cron", outdated=True, pending=False)
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("fedora-cron", "true")) is None
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("fedora-cron", "false")) == 1
    metrics.set_cron_outdated("default", "centos-cron", outdated=False, pending=False)
    metrics.set_cron_outdated("default", "fedora-cron", outdated=False, pending=False)
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("fedora-cron", "false")) == 0
    metrics.forget_cron("default", "fedora-cron")
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("fedora-cron", "false")) is None
    assert metrics.value(m.DATAIMPORTCRON_OUTDATED, labels("centos-cron", "false")) == 0
    assert ControlPlaneMetrics().value(m.DATAIMPORTCRON_OUTDATED, labels("centos-cron", "false")) is None


async def test_metrics_server_serves_the_text_format() -> None:
    metrics = ControlPlaneMetrics()
    metrics.set_cron_outdated("golden", "fedora-cron", outdated=True, pending=False)
    server = MetricsServer(metrics.registry)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{server.port}{m.METRICS_PATH}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.stop()
    assert "# TYPE kubevirt_cdi_dataimportcron_outdated gauge" in text
    assert 'kubevirt_cdi_dataimportcron_outdated{cron_name="fedora-cron",namespace="golden",pending="false"} 1.0' \
        in text


async def test_metrics_share_the_health_listener() -> None:
    """`cdi controller`'s default: /metrics on the health port (8080, as upstream)."""
    metrics = ControlPlaneMetrics()
    metrics.set_cron_outdated("default", "fedora-cron", outdated=False, pending=False)
    server = HealthServer(lambda: True, routes={m.METRICS_PATH: metrics_handler(metrics.registry)})
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with session.get(f"{base}{m.METRICS_PATH}") as response:
                assert 'cron_name="fedora-cron"' in await response.text()
    finally:
        await server.stop()


@pytest.mark.parametrize(("metrics_port", "on_health", "own"), [
    (None, True, False),  # the default: upstream's 8080, one listener with the health endpoints
    (0, False, True),     # a port of its own (0: any)
    (-1, False, False),   # off
])
async def test_controller_listeners(metrics_port: int | None, on_health: bool, own: bool) -> None:
    command = ControllerCommand(None, "cdi", "img", None, health_port=0, qps=1, burst=1, leader_elect=False,
                                metrics_port=metrics_port)
    metrics = ControlPlaneMetrics() if metrics_port != -1 else None
    health, separate = _listeners(command, cast(Manager, SimpleNamespace(active=True)), metrics)
    assert (separate is not None) == own
    await health.start()
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{health.port}{m.METRICS_PATH}") as response:
            assert (response.status == 200) == on_health
    finally:
        await health.stop()
