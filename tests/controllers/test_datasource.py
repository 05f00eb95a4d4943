"""The DataSource controller: resolution (chains, refusals) and readiness as tables, then the reconciler on both
backends (status written with the object, labels copied, source cleared while not ready)."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.cluster.protocol import Cluster
from cdi.controllers.datasource import DataSourceReconciler, Resolved, SourceIndex, readiness, resolve
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock

DV_API = "cdi.kubevirt.io/v1beta1"


def ds(name: str, source: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": DV_API, "kind": "DataSource", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": source}}


@pytest.mark.parametrize(("doc", "others", "expected"), [
    (ds("a", {"pvc": {"name": "golden", "namespace": "images"}}), {}, Resolved("pvc", "images", "golden")),
    (ds("a", {"snapshot": {"name": "snap", "namespace": "default"}}), {}, Resolved("snapshot", "default", "snap")),
    (ds("a", {"dataSource": {"name": "b", "namespace": "default"}}),
     {"b": ds("b", {"pvc": {"name": "golden", "namespace": "default"}})}, Resolved("pvc", "default", "golden", ("b",))),
    (ds("a", {"dataSource": {"name": "a", "namespace": "default"}}), {},
     Resolved(problem=("SelfReference", "DataSource default/a references itself"))),
    (ds("a", {"dataSource": {"name": "b", "namespace": "other"}}), {},
     Resolved(problem=("CrossNamespaceReference", "DataSource references other/b in another namespace"))),
    (ds("a", {"dataSource": {"name": "b", "namespace": "default"}}),
     {"b": ds("b", {"dataSource": {"name": "c", "namespace": "default"}})},
     Resolved(problem=("MaxReferenceDepthReached", "DataSource reference depth exceeds the maximum of 1"))),
    (ds("a", {"dataSource": {"name": "b", "namespace": "default"}}), {},
     Resolved(problem=("NotFound", "Referenced DataSource default/b not found"))),
    (ds("a", {}), {}, Resolved()),
])
def test_resolve(doc: dict[str, Any], others: dict[str, Any], expected: Resolved) -> None:
    assert resolve(doc, lambda namespace, name: others.get(name)) == expected


PVC = Resolved("pvc", "default", "golden")
SNAP = Resolved("snapshot", "default", "snap")


@pytest.mark.parametrize(("resolved", "dv_phase", "claim", "snapshot_ready", "expected"), [
    (PVC, None, True, None, (True, "Ready", "DataSource is ready to be consumed")),
    (PVC, None, False, None, (False, "NotFound", "PVC not found")),
    (PVC, "ImportInProgress", True, None, (False, "ImportInProgress", "Import DataVolume phase ImportInProgress")),
    (PVC, "Succeeded", True, None, (True, "Ready", "DataSource is ready to be consumed")),
    (SNAP, None, False, True, (True, "Ready", "DataSource is ready to be consumed")),
    (SNAP, None, False, False, (False, "SnapshotNotReady", "Snapshot phase is not ready")),
    (SNAP, None, False, None, (False, "NotFound", "Snapshot not found")),
    (Resolved(), None, False, None, (False, "NoSource", "No source PVC set")),
])
def test_readiness(resolved: Resolved, dv_phase: str | None, claim: bool, snapshot_ready: bool | None,
                   expected: tuple[bool, str, str]) -> None:
    data_volume = {"status": {"phase": dv_phase}} if dv_phase else None
    snapshot = {"status": {"readyToUse": snapshot_ready}} if snapshot_ready is not None else None
    found = readiness(resolved, data_volume, {"metadata": {}} if claim else None, snapshot)
    assert (found.ready, found.reason, found.message) == expected


async def test_reconciler_follows_the_claim(cluster: Cluster, clock: FixedClock) -> None:
    await cluster.create(ds("fedora", {"pvc": {"name": "golden", "namespace": "default"}}))
    reconciler = DataSourceReconciler(cluster, clock, SourceIndex())
    await reconciler.reconcile(Key("default", "fedora"))
    stored = await cluster.get(DV_API, "DataSource", "fedora", "default")
    ready = stored["status"]["conditions"][0]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "NotFound", "PVC not found")
    assert not stored["status"].get("source")
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "golden", "namespace": "default",
                                       "labels": {"instancetype.kubevirt.io/default-preference": "fedora",
                                                  "unrelated": "x"}},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    await reconciler.reconcile(Key("default", "fedora"))
    stored = await cluster.get(DV_API, "DataSource", "fedora", "default")
    ready = stored["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Ready")
    assert stored["status"]["source"] == {"pvc": {"namespace": "default", "name": "golden"}}
    assert stored["metadata"]["labels"] == {"instancetype.kubevirt.io/default-preference": "fedora"}
