"""`cdi describe`: the object's tree, its conditions table and the Events recorded about it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdi.cluster.events import record_event
from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import RunAsync
from tests.cli.manifests import datavolume

DV = "cdi.kubevirt.io/v1beta1"


async def test_describe_shows_conditions_and_matching_events(cluster: EmbeddedCluster,
                                                             cdi_in_thread: RunAsync) -> None:
    fedora = await cluster.create(datavolume("fedora", labels={"app": "vm"}))
    other = await cluster.create(datavolume("other"))
    await cluster.patch_status(DV, "DataVolume", "fedora", {"status": {"phase": "Succeeded", "conditions": [
        {"type": "Ready", "status": "True", "reason": "Completed", "message": "Import Complete",
         "lastTransitionTime": "2024-05-10T11:58:00Z"}]}}, "default")
    earlier = datetime.now(UTC) - timedelta(minutes=3, seconds=2)
    await record_event(cluster, fedora, "Warning", "ErrConnect", "connection refused",
                       component="datavolume-import-controller", clock=lambda: earlier)
    for _ in range(2):
        await record_event(cluster, fedora, "Normal", "ImportSucceeded", "Import Successful",
                           component="datavolume-import-controller", clock=lambda: datetime.now(UTC))
    await record_event(cluster, other, "Normal", "Pending", "not about fedora", component="x",
                       clock=lambda: datetime.now(UTC))

    result = await cdi_in_thread("describe", "dv", "fedora")
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[:6] == ["Name:         fedora", "Namespace:    default", "Labels:       app=vm",
                         "Annotations:  <none>", "API Version:  cdi.kubevirt.io/v1beta1", "Kind:         DataVolume"]
    assert "  Source:" in lines and "    Blank:" in lines
    conditions = lines.index("  Conditions:")
    assert lines[conditions + 1].split() == ["Type", "Status", "Reason", "Message", "Last", "Transition"]
    assert lines[conditions + 3].split() == ["Ready", "True", "Completed", "Import", "Complete",
                                             "2024-05-10T11:58:00Z"]
    events = lines[lines.index("Events:"):]
    assert [line.split()[:2] for line in events[1:]] == [["Type", "Reason"], ["----", "------"],
                                                        ["Warning", "ErrConnect"], ["Normal", "ImportSucceeded"]]
    assert events[3].split()[2] == "3m2s"
    assert "(x2 over" in events[4] and events[4].endswith("datavolume-import-controller  Import Successful")


async def test_describe_by_prefix_and_errors(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora-39"))
    await cluster.create(datavolume("fedora-40"))
    both = await cdi_in_thread("describe", "dv", "fedora")
    assert both.out.count("Name:         fedora-") == 2 and both.out.count("Events:  <none>") == 2
    missing = await cdi_in_thread("describe", "dv", "centos")
    assert (missing.code, missing.err) == (1, 'error: datavolumes.cdi.kubevirt.io "centos" not found\n')
    unknown = await cdi_in_thread("describe", "widgets", "x")
    assert (unknown.code, unknown.err) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
