"""`record_event`: Events about an object, created once and then counted, as client-go's recorder does."""

from __future__ import annotations

import asyncio

import pytest

from cdi.cluster.errors import Invalid
from cdi.cluster.events import record_event
from cdi.embedded import EmbeddedCluster
from tests.cluster.conftest import FakeClock
from tests.cluster.manifests import datavolume


async def test_record_event_creates_then_aggregates(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    dv = await cluster.create(datavolume("disk"))
    first = await record_event(cluster, dv, "Normal", "ImportScheduled", "Import into disk scheduled",
                               component="datavolume-controller", clock=clock)
    assert first["count"] == 1
    assert first["metadata"]["namespace"] == "default" and first["metadata"]["name"].startswith("disk.")
    assert first["involvedObject"] == {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "disk", "namespace": "default",
        "uid": dv["metadata"]["uid"], "resourceVersion": dv["metadata"]["resourceVersion"]}
    assert first["source"] == {"component": "datavolume-controller"}
    assert first["firstTimestamp"] == first["lastTimestamp"] == "2024-05-01T12:00:00Z"

    clock.advance(90)
    again = await record_event(cluster, dv, "Normal", "ImportScheduled", "Import into disk scheduled",
                               component="datavolume-controller", clock=clock)
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2
    assert (again["firstTimestamp"], again["lastTimestamp"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:01:30Z")

    await record_event(cluster, dv, "Warning", "ErrImportFailed", "Unable to connect to http data source",
                       component="datavolume-controller", clock=clock)
    events = (await cluster.list("v1", "Event", "default")).items
    assert sorted((e["type"], e["reason"], e["count"]) for e in events) == [
        ("Normal", "ImportScheduled", 2), ("Warning", "ErrImportFailed", 1)]


async def test_concurrent_recorders_count_every_occurrence(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    dv = await cluster.create(datavolume("disk"))
    await asyncio.gather(*(record_event(cluster, dv, "Normal", "Pending", "PVC disk Pending",
                                        component="cdi", clock=clock) for _ in range(4)))
    (event,) = (await cluster.list("v1", "Event", "default")).items
    assert event["count"] == 4


async def test_events_about_cluster_scoped_objects_go_to_default(cluster: EmbeddedCluster,
                                                                 clock: FakeClock) -> None:
    profile = await cluster.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                                    "metadata": {"name": "local"}, "spec": {}})
    event = await record_event(cluster, profile, "Normal", "Updated", "profile updated", component="cdi",
                               clock=clock)
    assert event["metadata"]["namespace"] == "default"
    assert "namespace" not in event["involvedObject"]


async def test_unknown_event_type_is_invalid(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    with pytest.raises(Invalid):
        await record_event(cluster, datavolume("disk"), "Error", "X", "y", component="cdi", clock=clock)


async def test_an_occurrence_counted_late_keeps_the_earliest_and_latest_times(cluster: EmbeddedCluster,
                                                                              clock: FakeClock) -> None:
    """Recorders write concurrently: the occurrence of 12:00 may reach the store after that of 12:05."""
    dv = await cluster.create(datavolume("disk"))
    clock.advance(300)
    await record_event(cluster, dv, "Normal", "Pending", "PVC disk Pending", component="cdi", clock=clock)
    clock.advance(-300)
    event = await record_event(cluster, dv, "Normal", "Pending", "PVC disk Pending", component="cdi", clock=clock)
    assert event["count"] == 2
    assert (event["firstTimestamp"], event["lastTimestamp"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z")
