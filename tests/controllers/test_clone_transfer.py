"""Where a clone DataVolume's host-assisted copy runs and what it is doing (`cdi.controllers.clone.transfer`):
pure tables for the NoPopulator fallback (the copy fills the target claim) and the populator's copy
strategy (it fills `tmp-pvc-<target uid>` in the source's namespace while `clonePhase` is HostClone), then
the populator case on both backends with a real `cdi-cloner` metrics endpoint: the DataVolume gets the
bytes while the temporary claim's source pod copies, and bytes done = total once that copy succeeded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.controllers.clone.transfer import HostCopyWatch, Seen, Stage, copy_claim_key, source_pod_key, stage
from cdi.controllers.progress import HttpsProgressScraper
from importer.cloner.main import CloneMetricsServer
from importer.progress import Progress
from tests.controllers.test_reconcilers import DV_API, KEY, create_dv, setup_storage
from tests.controllers.test_transfer_progress import POD_IP, SteppedClock, transfer_notes

MI = 1 << 20


def claim(name: str, namespace: str = "default", uid: str = "u-1", **notes: str) -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": notes}}


def pod(phase: str, ip: str | None = "10.0.0.7", deleting: bool = False) -> Object:
    metadata: dict[str, Any] = {"name": "p", "namespace": "src"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-21T06:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase, **({"podIP": ip} if ip else {})}}


FALLBACK = claim("fedora", **{ann.ANN_CLONE_REQUEST: "src/golden"})
POPULATED = claim("fedora", uid="t-1", **{ann.ANN_CLONE_PHASE: "HostClone", ann.ANN_DATA_SOURCE_NAMESPACE: "src"})
TMP = claim("tmp-pvc-t-1", "src", "tmp-1", **{ann.ANN_CLONE_REQUEST: "src/golden"})


@pytest.mark.parametrize(("target", "expected"), [
    (FALLBACK, ("default", "fedora")),  # NoPopulator: straight into the target
    (POPULATED, ("src", "tmp-pvc-t-1")),  # copy strategy: the temporary claim in the source's namespace
    (claim("fedora", uid="t-1", **{ann.ANN_CLONE_PHASE: "HostClone"}), ("default", "tmp-pvc-t-1")),
    (claim("fedora", **{ann.ANN_CLONE_PHASE: "CSIClone"}), None),
    (claim("fedora", **{ann.ANN_CLONE_PHASE: "Rebind"}), None),
    (claim("fedora"), None),
])
def test_which_claim_a_host_assisted_copy_fills(target: Object, expected: tuple[str, str] | None) -> None:
    assert copy_claim_key(target) == expected


def test_the_source_pod_lives_in_the_source_namespace_named_for_the_copy_claim() -> None:
    assert source_pod_key(TMP) == ("src", cp.source_pod_name("tmp-1"))
    assert source_pod_key(claim("x")) is None


@pytest.mark.parametrize(("seen", "expected"), [
    (Seen("CloneInProgress", FALLBACK, FALLBACK, pod("Running")), Stage.RUNNING),
    (Seen("CloneInProgress", FALLBACK, FALLBACK, None), Stage.WAITING),  # CloneSourceInUse: no pod yet
    (Seen("CloneInProgress", FALLBACK, FALLBACK, pod("Pending", None)), Stage.WAITING),
    (Seen("CloneInProgress", FALLBACK, FALLBACK, pod("Running", None)), Stage.WAITING),  # no address yet
    (Seen("CloneInProgress", FALLBACK, FALLBACK, pod("Running", deleting=True)), Stage.WAITING),
    (Seen("CloneInProgress", FALLBACK, FALLBACK, pod("Failed")), Stage.WAITING),  # restarting
    (Seen("Failed", FALLBACK, FALLBACK, None), Stage.IDLE),  # a fatal failure ended it
    (Seen("CloneInProgress", POPULATED, TMP, pod("Running")), Stage.RUNNING),
    (Seen("CloneInProgress", POPULATED, None, None), Stage.IDLE),  # the temporary claim is not there yet
    (Seen("CSICloneInProgress", claim("fedora", **{ann.ANN_CLONE_PHASE: "CSIClone"}), None, None), Stage.IDLE),
    (Seen("CloneInProgress", FALLBACK | {"metadata": {**FALLBACK["metadata"], "annotations": {
        ann.ANN_CLONE_REQUEST: "src/golden", ann.ANN_POD_PHASE: "Succeeded"}}}, None, None), Stage.SUCCEEDED),
    (Seen("CloneInProgress", POPULATED, claim("tmp-pvc-t-1", "src", **{ann.ANN_CLONE_REQUEST: "src/golden",
                                                                      ann.ANN_POD_PHASE: "Succeeded"}), None),
     Stage.SUCCEEDED),
    (Seen("RebindInProgress", claim("fedora", **{ann.ANN_CLONE_PHASE: "Succeeded"}), None, None), Stage.SUCCEEDED),
    (Seen("Succeeded", None, None, None), Stage.SUCCEEDED),  # the claim went after success
])
def test_stage(seen: Seen, expected: Stage) -> None:
    assert stage(seen) == expected


def new_claim(name: str, notes: dict[str, str]) -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": KEY.namespace, "annotations": notes},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


@pytest.fixture
async def cloner_endpoint() -> AsyncIterator[list[CloneMetricsServer]]:
    started: list[CloneMetricsServer] = []
    yield started
    for server in started:
        await server.stop()


async def test_the_populators_copy_reaches_the_data_volume_through_its_temporary_claim(
        cluster: Cluster, cloner_endpoint: list[CloneMetricsServer]) -> None:
    clock = SteppedClock()
    await setup_storage(cluster, clock)  # type: ignore[arg-type]
    await create_dv(cluster, {"pvc": {"namespace": KEY.namespace, "name": "golden"}})
    target = await cluster.create(new_claim(KEY.name, {ann.ANN_CLONE_PHASE: "HostClone"}))
    target_uid = target["metadata"]["uid"]
    tmp = await cluster.create(new_claim(f"tmp-pvc-{target_uid}", {ann.ANN_CLONE_REQUEST: f"{KEY.namespace}/golden"}))
    pod_name = cp.source_pod_name(tmp["metadata"]["uid"])
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": KEY.namespace},
                          "spec": {"containers": [{"name": "cdi-clone-source", "image": "img",
                                                   "env": [{"name": cp.OWNER_UID, "value": target_uid}]}]}})
    await cluster.patch_status("v1", "Pod", pod_name, {"status": {"phase": "Running", "podIP": POD_IP}}, KEY.namespace)
    progress = Progress()
    server = CloneMetricsServer(progress, target_uid, f"{POD_IP}:0")  # labelled as the populator's job
    cloner_endpoint.append(server)
    await server.start()
    assert server.port is not None
    watch = HostCopyWatch(cluster, clock, HttpsProgressScraper(server.port))

    async def observe(seconds: float) -> Stage:
        clock.seconds = seconds
        doc = await cluster.get(DV_API, "DataVolume", KEY.name, KEY.namespace)
        found, _ = await watch.observe(doc, await cluster.get("v1", "PersistentVolumeClaim", KEY.name, KEY.namespace))
        return found

    async def notes() -> dict[str, str]:
        return transfer_notes(await cluster.get(DV_API, "DataVolume", KEY.name, KEY.namespace))

    progress.bytes_done(64 * MI, 512 * MI)
    assert await observe(0.0) == Stage.RUNNING
    progress.bytes_done(128 * MI, 512 * MI)
    assert await observe(8.0) == Stage.RUNNING
    assert await notes() == {ann.ANN_TRANSFER_BYTES_DONE: str(128 * MI), ann.ANN_TRANSFER_BYTES_TOTAL: str(512 * MI),
                             ann.ANN_TRANSFER_RATE: str(8 * MI), ann.ANN_TRANSFER_ETA: "48"}

    await cluster.patch("v1", "PersistentVolumeClaim", tmp["metadata"]["name"],
                        {"metadata": {"annotations": {ann.ANN_POD_PHASE: "Succeeded"}}}, KEY.namespace)
    assert await observe(10.0) == Stage.SUCCEEDED
    assert await notes() == {ann.ANN_TRANSFER_BYTES_DONE: str(512 * MI), ann.ANN_TRANSFER_BYTES_TOTAL: str(512 * MI)}
    await cluster.patch("v1", "PersistentVolumeClaim", KEY.name,
                        {"metadata": {"annotations": {ann.ANN_CLONE_PHASE: "Rebind"}}}, KEY.namespace)
    assert await observe(12.0) == Stage.IDLE  # the copy is over: nothing more to show or to change
    assert await notes() == {ann.ANN_TRANSFER_BYTES_DONE: str(512 * MI), ann.ANN_TRANSFER_BYTES_TOTAL: str(512 * MI)}
