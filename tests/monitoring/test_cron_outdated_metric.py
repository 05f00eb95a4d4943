"""The DataImportCron reconciler publishes `kubevirt_cdi_dataimportcron_outdated` for what it writes,
on the embedded store with the clock and the source's digest in the test's hands: outdated and pending
while no StorageClass exists, outdated (what the alert counts) once a default class is recorded, 0 once
the import succeeded, 1 again on a new digest, and no series once the cron is deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.cluster.protocol import Cluster
from cdi.contracts import annotations as ann
from cdi.contracts import metrics as m
from cdi.controllers.dataimportcron.controller import DataImportCronReconciler
from cdi.embedded import EmbeddedCluster
from cdi.monitoring import ControlPlaneMetrics
from cdi.runtime.types import Key
from tests.dataimportcron.conftest import DV_API, NS, FakePoller, StepClock, cron_doc, digest, finish_import

KEY = Key(NS, "fedora-cron")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with EmbeddedCluster(tmp_path / "store.db") as store:
        yield store


def gauge(metrics: ControlPlaneMetrics) -> dict[str, float | None]:
    """The cron's series by `pending` label."""
    return {pending: metrics.value(m.DATAIMPORTCRON_OUTDATED, {
        m.LABEL_NAMESPACE: NS, m.LABEL_CRON_NAME: "fedora-cron", m.LABEL_PENDING: pending})
        for pending in ("true", "false")}


async def test_gauge_follows_the_cron(cluster: Cluster) -> None:
    clock, poller, metrics = StepClock(), FakePoller(digest("a")), ControlPlaneMetrics()
    crons = DataImportCronReconciler(cluster, clock, {"registry": poller}, metrics=metrics)
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)
    assert gauge(metrics) == {"true": 1, "false": None}  # no StorageClass at all: pending

    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "csi.example",
                          "metadata": {"name": "local", "annotations": {ann.ANN_DEFAULT_STORAGE_CLASS: "true"}}})
    await crons.reconcile(KEY)
    assert gauge(metrics) == {"true": None, "false": 1}  # a class is recorded: outdated for real

    await finish_import(cluster, "fedora-" + "a" * 12)
    await crons.reconcile(KEY)
    assert gauge(metrics) == {"true": None, "false": 0}  # up to date

    poller.digest = digest("b")
    clock.advance(hours=12)  # the next poll finds a new digest
    await crons.reconcile(KEY)
    assert gauge(metrics) == {"true": None, "false": 1}

    await cluster.delete(DV_API, "DataImportCron", "fedora-cron", NS)  # held by the finalizer
    await crons.reconcile(KEY)
    assert gauge(metrics) == {"true": None, "false": None}


async def test_without_metrics_nothing_is_published(cluster: Cluster) -> None:
    crons = DataImportCronReconciler(cluster, StepClock(), {"registry": FakePoller()})
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)  # metrics=None: the reconcile works as before
    assert ann.ANN_SOURCE_DESIRED_DIGEST in (await cluster.get(DV_API, "DataImportCron", "fedora-cron", NS))[
        "metadata"]["annotations"]
