"""DataImportCron tests: the both-backend `cluster` fixture of the controller suite, a clock the test
moves, a poller whose digest the test sets, and the steps of the DataVolume controller played by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.controllers.dataimportcron.pollers import PollError, PollTarget
from cdi.embedded import EmbeddedCluster
from cdi.kube import connect
from tests.support.backends import reset_cluster
from tests.support.kubecluster import KubeCluster

DV_API = "cdi.kubevirt.io/v1beta1"
NS = "default"


@pytest.fixture(params=["embedded", "kubernetes"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The controller suite's two backends; on the shared API server, crons and DataSources left by an
    earlier test (a cron keeps a finalizer) are removed first, as `reset_cluster` does for other kinds."""
    if request.param == "embedded":
        async with EmbeddedCluster(tmp_path / "store.db") as store:
            yield store
        return
    control_plane: KubeCluster = request.getfixturevalue("kube_api_only")
    async with await connect(control_plane.kubeconfig_path) as kube:
        await _remove_crons(kube)
        await reset_cluster(kube)
        yield kube
        await _remove_crons(kube)  # the other suites' reset does not know these kinds


async def _remove_crons(kube: Cluster) -> None:
    for kind in ("DataImportCron", "DataSource"):
        for item in (await kube.list(DV_API, kind, NS)).items:
            try:
                await kube.patch(DV_API, kind, item["metadata"]["name"], {"metadata": {"finalizers": None}}, NS)
                await kube.delete(DV_API, kind, item["metadata"]["name"], NS)
            except NotFound:
                pass


@dataclass
class StepClock:
    moment: datetime = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.moment.timestamp()

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@dataclass
class FakePoller:
    """Answers every poll with `digest` (or raises `error`), and remembers what it was asked."""

    digest: str = "sha256:" + "a" * 64
    error: PollError | None = None
    polled: list[PollTarget] = field(default_factory=list)

    async def poll(self, target: PollTarget) -> str:
        self.polled.append(target)
        if self.error is not None:
            raise self.error
        return self.digest


def digest(char: str) -> str:
    return "sha256:" + char * 64


def cron_doc(name: str = "fedora-cron", *, source: dict[str, Any] | None = None, schedule: str = "0 */12 * * *",
             **spec: Any) -> Object:
    return {"apiVersion": DV_API, "kind": "DataImportCron", "metadata": {"name": name, "namespace": NS},
            "spec": {"schedule": schedule, "managedDataSource": "fedora", **spec,
                     "template": {"spec": {"source": source or {"registry": {"url": "docker://127.0.0.1:5000/disks/fedora:latest"}},
                                           "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}}}


async def set_dv_phase(cluster: Cluster, name: str, phase: str, running: tuple[str, str] | None = None) -> None:
    status: dict[str, Any] = {"phase": phase}
    if running is not None:
        status["conditions"] = [{"type": "Running", "status": "False", "reason": running[0], "message": running[1]}]
    await cluster.patch_status(DV_API, "DataVolume", name, {"status": status}, NS)


async def finish_import(cluster: Cluster, name: str) -> None:
    """What the DataVolume controller does for a successful import: a claim carrying the DataVolume's
    labels and annotations, bound, and the DataVolume Succeeded."""
    dv = await cluster.get(DV_API, "DataVolume", name, NS)
    meta = dv["metadata"]
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": name, "namespace": NS, "labels": meta.get("labels") or {},
                                       "annotations": meta.get("annotations") or {}},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    await cluster.patch_status("v1", "PersistentVolumeClaim", name, {"status": {"phase": "Bound"}}, NS)
    await set_dv_phase(cluster, name, "Succeeded")


async def cron_of(cluster: Cluster, name: str = "fedora-cron") -> Object:
    return await cluster.get(DV_API, "DataImportCron", name, NS)


def condition(cron: Object, type_: str) -> tuple[str, str]:
    found = next(c for c in cron["status"]["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


async def event_reasons(cluster: Cluster) -> list[str]:
    return [e["reason"] for e in (await cluster.list("v1", "Event", NS)).items]


async def names(cluster: Cluster, kind: str, api: str = DV_API) -> list[str]:
    return sorted(o["metadata"]["name"] for o in (await cluster.list(api, kind, NS)).items
                  if not o["metadata"].get("deletionTimestamp"))
