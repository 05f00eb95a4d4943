"""`cdi delete`: kubectl's "deleted" lines, waiting out finalizers, timeouts, manifests and absent objects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import RunAsync
from tests.cli.manifests import BLANK_DV, datavolume

DV = "cdi.kubevirt.io/v1beta1"


async def _exists(cluster: EmbeddedCluster, name: str) -> bool:
    listed = await cluster.list(DV, "DataVolume", "default")
    return any(obj["metadata"]["name"] == name for obj in listed.items)


async def test_delete_without_finalizers(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("a"))
    await cluster.create(datavolume("b"))
    result = await cdi_in_thread("delete", "dv", "a", "b")
    assert (result.code, result.out, result.err) == (
        0, 'datavolume.cdi.kubevirt.io "a" deleted\ndatavolume.cdi.kubevirt.io "b" deleted\n', "")
    assert not await _exists(cluster, "a") and not await _exists(cluster, "b")


async def test_finalizer_makes_wait_time_out(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("held", finalizers=["example.com/cleanup"]))
    result = await cdi_in_thread("delete", "dv", "held", "--timeout=0.3s")
    assert result.code == 1
    assert result.out == 'datavolume.cdi.kubevirt.io "held" deleted\n'
    assert result.err == "error: timed out waiting for the condition on datavolumes/held\n"
    held = await cluster.get(DV, "DataVolume", "held", "default")
    assert held["metadata"]["deletionTimestamp"]
    again = await cdi_in_thread("delete", "dv", "held", "--wait=false")
    assert again.code == 0  # already terminating: nothing more to do


async def test_wait_finishes_once_the_finalizer_goes(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("held", finalizers=["example.com/cleanup"]))
    deleting = asyncio.create_task(cdi_in_thread("delete", "dv", "held", "--timeout", "10s"))
    await _until(lambda: deleting.done(), cluster, "held")
    await cluster.patch(DV, "DataVolume", "held", {"metadata": {"finalizers": None}}, "default")
    result = await asyncio.wait_for(deleting, 10)
    assert (result.code, result.err) == (0, "")
    assert not await _exists(cluster, "held")


async def _until(done: Callable[[], bool], cluster: EmbeddedCluster, name: str) -> None:
    """Until the object is marked for deletion (the command is then waiting on it)."""
    for _ in range(200):
        obj = await cluster.get(DV, "DataVolume", name, "default")
        if obj["metadata"].get("deletionTimestamp") or done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the delete never started")


async def test_absent_objects_and_no_wait(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("held", finalizers=["example.com/cleanup"]))
    result = await cdi_in_thread("delete", "dv", "ghost", "held", "--wait=false")
    assert result.code == 1
    assert result.out == 'datavolume.cdi.kubevirt.io "held" deleted\n'
    assert result.err == 'error: datavolumes.cdi.kubevirt.io "ghost" not found\n'
    quiet = await cdi_in_thread("delete", "dv", "ghost", "--ignore-not-found")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")


async def test_delete_by_manifest_and_selector(cluster: EmbeddedCluster, cdi_in_thread: RunAsync,
                                               write_file: Callable[[str, str], str]) -> None:
    path = write_file("dv.yaml", BLANK_DV)
    await cdi_in_thread("apply", "-f", path)
    result = await cdi_in_thread("delete", "-f", path)
    assert result.out == 'datavolume.cdi.kubevirt.io "blank-dv" deleted\n'
    await cluster.create(datavolume("web", labels={"app": "web"}))
    await cluster.create(datavolume("db", labels={"app": "db"}))
    selected = await cdi_in_thread("delete", "dv", "-l", "app=web")
    assert selected.out == 'datavolume.cdi.kubevirt.io "web" deleted\n'
    assert await _exists(cluster, "db")
    usage = await cdi_in_thread("delete", "dv")
    assert usage.code == 1 and usage.err.startswith("error: resource(s) were provided, but no name was specified")
