"""Objects nothing acts on yet say so: the pure plan as a table, then the reconciler on a cluster backend."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.cluster.protocol import Cluster
from cdi.contracts.conditions import NOT_SUPPORTED, wont_progress
from cdi.controllers.notsupported import NotSupportedReconciler, gap, plan
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock

DV_API = "cdi.kubevirt.io/v1beta1"
NOW = "2026-11-21T06:00:00Z"


def dv(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": "d", "namespace": "default"},
            "spec": {"storage": {"resources": {"requests": {"storage": "1Gi"}}}, **spec}}


@pytest.mark.parametrize(("doc", "expected"), [
    (dv({"source": {"pvc": {"name": "golden", "namespace": "os"}}}), None),  # the clone controllers
    (dv({"source": {"snapshot": {"name": "snap", "namespace": "os"}}}), None),
    (dv({"sourceRef": {"kind": "DataSource", "name": "fedora"}}), None),
    (dv({"source": {"http": {"url": "https://h/d.img"}}}), None),
    (dv({"source": {"upload": {}}}), None),
    (dv({"source": {"blank": {}}}), None),
])
def test_datavolume_gaps(doc: dict[str, Any], expected: str | None) -> None:
    found = gap("DataVolume", doc)
    assert (found is None) if expected is None else (found is not None and found.startswith(expected))


@pytest.mark.parametrize(("kind", "doc", "supported"), [
    ("PersistentVolumeClaim", {"spec": {"dataSourceRef": {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeImportSource",
                                                          "name": "src"}}}, True),  # cdi.controllers.populators
    ("PersistentVolumeClaim", {"spec": {"dataSourceRef": {"apiGroup": "other.io", "kind": "VolumeImportSource",
                                                          "name": "src"}}}, True),
    ("PersistentVolumeClaim", {"spec": {}}, True),
    ("DataImportCron", {"spec": {}}, True),  # cdi.controllers.dataimportcron
    ("ObjectTransfer", {"spec": {}}, False),
    ("CDI", {"spec": {}}, True),  # cdi.operator
    ("DataSource", {"spec": {}}, True),  # the DataSource controller
    ("StorageProfile", {"spec": {}}, True),
])
def test_kind_gaps(kind: str, doc: dict[str, Any], supported: bool) -> None:
    assert (gap(kind, {"metadata": {"name": "x"}, **doc}) is None) == supported


def test_plan_writes_kind_conditions_once() -> None:
    transfer = {"metadata": {"name": "t"}, "spec": {}}
    first = plan("ObjectTransfer", transfer, NOW)
    assert first is not None and first.status is not None
    assert [(c["type"], c["status"], c["reason"]) for c in first.status["conditions"]] == [
        ("Complete", "False", NOT_SUPPORTED)]
    assert "ObjectTransfer is not supported yet" in first.event
    assert plan("ObjectTransfer", {**transfer, "status": first.status}, "2026-11-22T00:00:00Z") is None


def test_plan_leaves_deleting_objects_alone() -> None:
    doc = dv({"source": {"pvc": {"name": "golden", "namespace": "os"}}})
    doc["metadata"]["deletionTimestamp"] = NOW
    assert plan("DataVolume", doc, NOW) is None


async def test_objecttransfer_gets_condition_event_and_wont_progress(cluster: Cluster, clock: FixedClock) -> None:
    await cluster.create({"apiVersion": DV_API, "kind": "ObjectTransfer", "metadata": {"name": "t"},
                          "spec": {"source": {"kind": "PersistentVolumeClaim", "namespace": "a", "name": "disk"},
                                   "target": {"namespace": "b"}}})
    await NotSupportedReconciler(cluster, clock, DV_API, "ObjectTransfer").reconcile(Key("", "t"))
    stored = await cluster.get(DV_API, "ObjectTransfer", "t")
    complete = next(c for c in stored["status"]["conditions"] if c["type"] == "Complete")
    assert (complete["status"], complete["reason"]) == ("False", NOT_SUPPORTED)
    assert complete["message"].startswith("ObjectTransfer is not supported yet")
    stopped = wont_progress(stored)
    assert stopped is not None and stopped[0] == NOT_SUPPORTED
    events = [e for e in (await cluster.list("v1", "Event", "default")).items if e["involvedObject"]["name"] == "t"]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", NOT_SUPPORTED)]
    await NotSupportedReconciler(cluster, clock, DV_API, "ObjectTransfer").reconcile(Key("", "t"))
    again = [e for e in (await cluster.list("v1", "Event", "default")).items if e["involvedObject"]["name"] == "t"]
    assert again[0].get("count", 1) == 1  # a second reconcile with nothing new records nothing


async def test_sourceref_datavolume_is_left_to_the_clone_controllers(cluster: Cluster, clock: FixedClock) -> None:
    await cluster.create({"apiVersion": DV_API, "kind": "DataSource", "metadata": {"name": "fedora",
                                                                                  "namespace": "default"},
                          "spec": {"source": {"pvc": {"name": "golden", "namespace": "default"}}}})
    await cluster.create(dv({"sourceRef": {"kind": "DataSource", "name": "fedora"}}))
    await NotSupportedReconciler(cluster, clock, DV_API, "DataVolume").reconcile(Key("default", "d"))
    stored = await cluster.get(DV_API, "DataVolume", "d", "default")
    assert "status" not in stored or not stored["status"].get("conditions")


async def test_import_datavolume_is_left_to_its_controller(cluster: Cluster, clock: FixedClock) -> None:
    await cluster.create(dv({"source": {"http": {"url": "https://h/d.img"}}}))
    await NotSupportedReconciler(cluster, clock, DV_API, "DataVolume").reconcile(Key("default", "d"))
    stored = await cluster.get(DV_API, "DataVolume", "d", "default")
    assert "status" not in stored or not stored["status"].get("conditions")

