"""`cdi wait`: conditions, JSONPath values and deletion, met by another writer's changes, and timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import RunAsync
from tests.cli.manifests import datavolume

DV = "cdi.kubevirt.io/v1beta1"


async def _set_status(cluster: EmbeddedCluster, name: str, status: dict[str, Any], delay: float = 0.2) -> None:
    await asyncio.sleep(delay)
    current = await cluster.get(DV, "DataVolume", name, "default")
    await cluster.update_status({**current, "status": status})


READY = {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "True", "reason": "Completed"}]}


async def test_wait_for_condition_set_by_another_writer(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    waiting = asyncio.create_task(cdi_in_thread("wait", "dv/fedora", "--for=condition=Ready", "--timeout=10s"))
    await _set_status(cluster, "fedora", {"phase": "ImportInProgress", "conditions": [
        {"type": "Ready", "status": "False", "reason": "TransferRunning"}]})
    await _set_status(cluster, "fedora", READY)
    result = await waiting
    assert (result.code, result.out, result.err) == (0, "datavolume.cdi.kubevirt.io/fedora condition met\n", "")


async def test_wait_for_jsonpath_and_false_condition(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    await cluster.create(datavolume("centos"))
    waiting = asyncio.create_task(cdi_in_thread("wait", "dv", "fedora", "centos",
                                                "--for=jsonpath={.status.phase}=Succeeded", "--timeout", "10"))
    await _set_status(cluster, "fedora", READY)
    await _set_status(cluster, "centos", READY, delay=0.05)
    result = await waiting
    assert result.out == ("datavolume.cdi.kubevirt.io/fedora condition met\n"
                          "datavolume.cdi.kubevirt.io/centos condition met\n")
    await _set_status(cluster, "fedora", {"conditions": [{"type": "Ready", "status": "False"}]}, delay=0)
    result = await cdi_in_thread("wait", "dv/fedora", "--for", "condition=Ready=false", "--timeout=1s")
    assert result.code == 0


async def test_wait_for_delete(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    waiting = asyncio.create_task(cdi_in_thread("wait", "datavolume/fedora", "--for=delete", "--timeout=10s"))
    await asyncio.sleep(0.2)
    await cluster.delete(DV, "DataVolume", "fedora", "default")
    assert (await waiting).out == "datavolume.cdi.kubevirt.io/fedora condition met\n"
    already = await cdi_in_thread("wait", "dv/fedora", "--for=delete")
    assert (already.code, already.out, already.err) == (0, "", "")


async def test_timeouts_and_missing_objects(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    result = await cdi_in_thread("wait", "dv/fedora", "--for=condition=Ready", "--timeout=300ms")
    assert (result.code, result.out) == (1, "")
    assert result.err == "error: timed out waiting for the condition on datavolumes/fedora\n"
    instant = await cdi_in_thread("wait", "dv/fedora", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=0")
    assert instant.err == "error: timed out waiting for the condition on datavolumes/fedora\n"
    missing = await cdi_in_thread("wait", "dv/ghost", "--for=condition=Ready")
    assert (missing.code, missing.err) == (1, 'error: datavolumes.cdi.kubevirt.io "ghost" not found\n')
    usage = await cdi_in_thread("wait", "dv", "--for=delete")
    assert usage.code == 1 and usage.err.startswith("error: resource(s) were provided, but no name was specified")


async def test_wait_for_create(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    waiting = asyncio.create_task(cdi_in_thread("wait", "pvc/fedora", "--for=create", "--timeout=10s"))
    await asyncio.sleep(0.2)
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "fedora", "namespace": "default"},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    assert (await waiting).out == "persistentvolumeclaim/fedora condition met\n"


NOT_SUPPORTED = {"phase": "Pending", "conditions": [
    {"type": "Ready", "status": "False", "reason": "NotSupported",
     "message": "source kind pvc (clone) is not implemented yet"}]}


async def test_a_datavolume_that_will_not_progress_fails_the_wait_at_once(
        cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("clone"))
    started = asyncio.get_running_loop().time()
    waiting = asyncio.create_task(cdi_in_thread("wait", "dv/clone", "--for=condition=Ready", "--timeout=30s"))
    await _set_status(cluster, "clone", NOT_SUPPORTED)
    result = await waiting
    assert (result.code, result.out) == (1, "")
    assert result.err == ("error: datavolumes/clone will not progress: NotSupported: source kind pvc (clone) is not "
                          "implemented yet\n")
    assert asyncio.get_running_loop().time() - started < 5  # not the 30 s timeout
    again = await cdi_in_thread("wait", "dv/clone", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=30s")
    assert (again.code, again.err) == (1, result.err)  # already stuck when the wait starts


async def test_a_failed_datavolume_fails_the_wait_unless_failure_is_what_is_awaited(
        cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("broken"))
    await _set_status(cluster, "broken", {"phase": "Failed", "conditions": [
        {"type": "Running", "status": "False", "reason": "ImportFailed", "message": "unable to connect"}]}, delay=0)
    failed = await cdi_in_thread("wait", "dv/broken", "--for=condition=Ready", "--timeout=30s")
    assert failed.err == "error: datavolumes/broken will not progress: ImportFailed: unable to connect\n"
    awaited = await cdi_in_thread("wait", "dv/broken", "--for=jsonpath={.status.phase}=Failed", "--timeout=30s")
    assert (awaited.code, awaited.out) == (0, "datavolume.cdi.kubevirt.io/broken condition met\n")


async def test_waiting_for_deletion_ignores_progress(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("clone"))
    await _set_status(cluster, "clone", NOT_SUPPORTED, delay=0)
    result = await cdi_in_thread("wait", "dv/clone", "--for=delete", "--timeout=300ms")
    assert result.err == "error: timed out waiting for the condition on datavolumes/clone\n"
