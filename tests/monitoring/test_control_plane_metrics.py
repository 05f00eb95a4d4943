"""CDI's controllers on the embedded store with the metrics `cdi serve` wires (`observe_cluster`), scraped
over HTTP and parsed with prometheus_client's parser: DataVolumes waiting for a default StorageClass are
`kubevirt_cdi_datavolume_pending` (one naming a class is not, though Pending too), a default class created with
WaitForFirstConsumer binding moves them on (the gauge drops to 0) and appears in
`kubevirt_cdi_storageprofile_info` once its StorageProfile is written; no CDI resource reads -1 on
`kubevirt_cdi_cr_ready`; the DataVolume controllers' reconcile and queue counters move."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdi.contracts import annotations as ann
from cdi.contracts import metrics as m
from cdi.controllers import cdiconfig
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.setup import ControllerOptions, cdi_controllers, observe_cluster
from cdi.embedded import EmbeddedCluster
from cdi.monitoring import ControlPlaneMetrics, MetricsServer
from cdi.runtime.manager import Manager
from tests.runtime.clock import FakeClock
from tests.runtime.waiting import running, until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WAIT = 20.0  # generous: the whole controller set shares two cores with other test runs


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "store.db", poll_interval=0.02) as opened:
        yield opened


def data_volume(name: str, storage: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"source": {"http": {"url": "http://127.0.0.1:9/disk.img"}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}, **storage}}}


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def find(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (found, labels) in samples if found == name]


async def test_state_and_reconcile_metrics_from_a_running_control_plane(cluster: EmbeddedCluster) -> None:
    clock = FakeClock()
    metrics = ControlPlaneMetrics()
    manager = Manager(cluster, clock=clock, metrics=metrics.runtime)
    await cdiconfig.ensure_config(cluster)
    for spec in cdi_controllers(manager.client(), clock, HttpsProgressScraper(),
                                ControllerOptions("pycdi/pycdi:test", metrics=metrics)):
        manager.add(spec)
    await observe_cluster(metrics, cluster, manager.reader, workers=True)
    server = MetricsServer(metrics.registry)
    await server.start()
    url = f"http://127.0.0.1:{server.port}{m.METRICS_PATH}"
    try:
        async with running(manager):
            await until(lambda: manager.active, timeout=WAIT, what="the manager to start")
            await cluster.create(data_volume("waits", {}))
            await cluster.create(data_volume("named", {"storageClassName": "fast"}))
            await until(lambda: _phase_is(cluster, "named", "Pending"), timeout=WAIT, what="the DataVolume naming a class to be Pending")
            await until(lambda: _pending_is(url, 1), timeout=WAIT, what="the DataVolume without a class to be counted")
            samples = await scrape(url)
            assert find(samples, m.CR_READY) == -1
            assert series(samples, m.STORAGEPROFILE_INFO) == []
            reconciles = {labels[m.LABEL_RESULT]: find(samples, m.RECONCILE_TOTAL, **labels)
                          for labels in series(samples, m.RECONCILE_TOTAL)
                          if labels[m.LABEL_CONTROLLER] == "datavolume-import-controller"}
            assert (reconciles["requeue_after"] or 0) >= 2  # both wait, and look again later
            assert (find(samples, m.WORKQUEUE_ADDS, name="datavolume-import-controller",
                         controller="datavolume-import-controller") or 0) >= 2

            await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                  "metadata": {"name": "local",
                                               "annotations": {ann.ANN_DEFAULT_STORAGE_CLASS: "true"}},
                                  "provisioner": "kubevirt.io.hostpath-provisioner",
                                  "volumeBindingMode": "WaitForFirstConsumer"})
            # "waits" gets its claim on the new default class and waits for a consumer; "named" still
            # names a class that does not exist, but a DataVolume naming one is never counted.
            await until(lambda: _has_profile(url), timeout=WAIT, what="the StorageProfile's series")
            clock.advance(300)  # the waiting DataVolume's requeue falls due
            await until(lambda: _pending_is(url, 0), timeout=WAIT, what="the pending gauge to drop")
            samples = await scrape(url)
            assert series(samples, m.STORAGEPROFILE_INFO) == [{
                "storageclass": "local", "provisioner": "kubevirt.io.hostpath-provisioner", "complete": "true",
                "default": "true", "virtdefault": "false", "rwx": "false", "smartclone": "false",
                "degraded": "true"}]
            dv = await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", "waits", "default")
            assert dv["status"]["phase"] == "WaitForFirstConsumer"
    finally:
        await server.stop()


async def _phase_is(cluster: EmbeddedCluster, name: str, phase: str) -> bool:
    await asyncio.sleep(0.02)
    dv = await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", name, "default")
    return bool((dv.get("status") or {}).get("phase") == phase)


async def _pending_is(url: str, expected: float) -> bool:
    await asyncio.sleep(0.02)
    return find(await scrape(url), m.DATAVOLUME_PENDING) == expected


async def _has_profile(url: str) -> bool:
    await asyncio.sleep(0.02)
    return bool(series(await scrape(url), m.STORAGEPROFILE_INFO))
