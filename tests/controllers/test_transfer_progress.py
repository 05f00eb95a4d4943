"""Progress a user can act on, end to end through the import controllers on both backends: a real importer
metrics endpoint (`importer.metrics.MetricsServer`, HTTPS on loopback at the pod's IP) serves bytes that
advance, then stop, then move again; the DataVolume gets bytes/rate/ETA annotations, then `Stalled=True`
with one Warning event, then `Stalled=False` with a Normal one. The controller's clock is injected and
stepped; nothing waits in real time. An upload whose user has not started is never stalled; one whose
client stopped midway is. A host-assisted clone is watched the same way through its `cdi-cloner` source
pod's endpoint, and only while that pod copies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdi.cluster.protocol import Cluster
from cdi.contracts import annotations as ann
from cdi.contracts.termination import TerminationMessage
from cdi.controllers.clone.authorization import CloneAuthorization
from cdi.controllers.clone.datavolume import CloneDataVolumeReconciler
from cdi.controllers.datavolume.controller import IMPORT_KIND, UPLOAD_KIND, DataVolumeReconciler
from cdi.controllers.hostclone.controller import CloneSourceReconciler
from cdi.controllers.importpod.controller import ImportPodReconciler
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.upload.controller import UploadReconciler
from cdi.runtime.types import Result
from importer.cloner.main import CloneMetricsServer
from importer.metrics import MetricsServer
from importer.progress import Progress
from tests.controllers.test_reconcilers import DV_API, KEY, bind, create_dv, set_container, setup_storage, step

MI = 1 << 20
POD_IP = "127.1.0.9"  # the address `set_container` gives the importer pod


@dataclass
class SteppedClock:
    seconds: float = 0.0

    def now(self) -> datetime:
        return datetime(2026, 11, 21, 6, 0, tzinfo=UTC) + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


@pytest.fixture
async def servers() -> AsyncIterator[list[MetricsServer]]:
    started: list[MetricsServer] = []
    yield started
    for server in started:
        await server.stop()


async def running_import(cluster: Cluster, clock: SteppedClock, servers: list[MetricsServer],
                         stall_timeout: timedelta, notes: dict[str, str] | None = None,
                         ) -> tuple[DataVolumeReconciler, Progress, ImportPodReconciler]:
    """The importer's endpoint labels its lines with the DataVolume's uid, so it starts once the DataVolume
    exists."""
    await setup_storage(cluster, clock)  # type: ignore[arg-type]
    await create_dv(cluster)
    if notes:
        await cluster.patch(DV_API, "DataVolume", KEY.name, {"metadata": {"annotations": notes}}, KEY.namespace)
    progress = Progress()
    server = MetricsServer(progress, (await dv(cluster))["metadata"]["uid"], f"{POD_IP}:0")
    servers.append(server)
    await server.start()
    assert server.port is not None
    dvs = DataVolumeReconciler(cluster, clock, IMPORT_KIND, HttpsProgressScraper(server.port),
                               stall_timeout=stall_timeout)
    pods = ImportPodReconciler(cluster, clock)
    await step(dvs, pods, 1)
    await bind(cluster)
    await step(dvs, pods)
    await set_container(cluster, "Running", {"running": {"startedAt": "2026-11-21T06:00:00Z"}})
    await pods.reconcile(KEY)
    return dvs, progress, pods


async def dv(cluster: Cluster) -> dict[str, Any]:
    return await cluster.get(DV_API, "DataVolume", KEY.name, KEY.namespace)


def transfer_notes(doc: dict[str, Any]) -> dict[str, str]:
    notes = doc["metadata"].get("annotations") or {}
    return {k: notes[k] for k in ann.TRANSFER_ANNOTATIONS if k in notes}


def stalled(doc: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in doc.get("status", {}).get("conditions", []) if c["type"] == "Stalled"), None)


async def stall_events(cluster: Cluster) -> list[tuple[str, str]]:
    events = (await cluster.list("v1", "Event", KEY.namespace)).items
    return sorted((e["type"], e["reason"]) for e in events if e["reason"].startswith("Transfer"))


async def at(dvs: DataVolumeReconciler | CloneDataVolumeReconciler, clock: SteppedClock, seconds: float) -> None:
    clock.seconds = seconds
    await dvs.reconcile(KEY)


async def test_bytes_rate_eta_then_stalled_then_moving_again(cluster: Cluster, servers: list[MetricsServer]) -> None:
    clock = SteppedClock()
    dvs, progress, pods = await running_import(cluster, clock, servers, timedelta(minutes=10))

    progress.bytes_done(100 * MI, 1000 * MI)
    await at(dvs, clock, 0.0)
    doc = await dv(cluster)
    assert doc["status"]["phase"] == "ImportInProgress"
    assert doc["status"]["progress"] == "10.00%"  # upstream's percentage, unchanged
    assert transfer_notes(doc) == {ann.ANN_TRANSFER_BYTES_DONE: str(100 * MI),
                                   ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI)}  # no rate from one reading

    progress.bytes_done(300 * MI, 1000 * MI)
    await at(dvs, clock, 10.0)
    assert transfer_notes(await dv(cluster)) == {
        ann.ANN_TRANSFER_BYTES_DONE: str(300 * MI), ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI),
        ann.ANN_TRANSFER_RATE: str(20 * MI), ann.ANN_TRANSFER_ETA: "35"}
    version = (await dv(cluster))["metadata"]["resourceVersion"]
    await at(dvs, clock, 11.0)  # the same bytes a second later: nothing to write
    assert (await dv(cluster))["metadata"]["resourceVersion"] == version

    for seconds in (60.0, 300.0, 609.0):  # the source stops sending
        await at(dvs, clock, seconds)
        assert stalled(await dv(cluster)) is None
    await at(dvs, clock, 610.0)
    await at(dvs, clock, 612.0)
    doc = await dv(cluster)
    condition = stalled(doc)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "TransferStalled")
    assert condition["message"] == ("no progress for 10m0s at 300Mi of 1000Mi; the source may be unreachable: "
                                    "see `cdi logs pod/importer-fedora -n default`")
    assert transfer_notes(doc)[ann.ANN_TRANSFER_RATE] == "0" and ann.ANN_TRANSFER_ETA not in transfer_notes(doc)
    assert await stall_events(cluster) == [("Warning", "TransferStalled")]  # one, not one per reconcile

    progress.bytes_done(310 * MI, 1000 * MI)
    await at(dvs, clock, 620.0)
    await at(dvs, clock, 622.0)
    condition = stalled(await dv(cluster))
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "TransferProgressing")
    assert await stall_events(cluster) == [("Normal", "TransferProgressing"), ("Warning", "TransferStalled")]

    done = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=False)
    await set_container(cluster, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed",
                                                              "message": done.to_json()}})
    await pods.reconcile(KEY)
    await at(dvs, clock, 630.0)
    doc = await dv(cluster)
    assert doc["status"]["phase"] == "Succeeded"
    # finished: all bytes done, nothing left to estimate
    assert transfer_notes(doc) == {ann.ANN_TRANSFER_BYTES_DONE: str(1000 * MI),
                                   ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI)}


async def test_a_data_volume_can_shorten_its_own_stall_timeout(cluster: Cluster,
                                                               servers: list[MetricsServer]) -> None:
    clock = SteppedClock()
    dvs, progress, _ = await running_import(cluster, clock, servers, timedelta(minutes=10),
                                            {ann.ANN_STALL_TIMEOUT: "1m"})
    progress.bytes_done(5 * MI, None)
    await at(dvs, clock, 0.0)
    await at(dvs, clock, 59.0)
    assert stalled(await dv(cluster)) is None
    await at(dvs, clock, 60.0)
    condition = stalled(await dv(cluster))
    assert condition is not None and condition["status"] == "True"
    assert condition["message"].startswith("no progress for 1m0s at 5.0Mi;")  # no total known
    assert transfer_notes(await dv(cluster))[ann.ANN_TRANSFER_BYTES_DONE] == str(5 * MI)


async def test_an_upload_waiting_for_its_user_is_not_stalled_but_one_whose_client_stopped_is(
        cluster: Cluster, servers: list[MetricsServer]) -> None:
    clock = SteppedClock()
    await setup_storage(cluster, clock)  # type: ignore[arg-type]
    await create_dv(cluster, {"upload": {}})
    progress = Progress()
    server = MetricsServer(progress, (await dv(cluster))["metadata"]["uid"], f"{POD_IP}:0")
    servers.append(server)
    await server.start()
    assert server.port is not None
    dvs = DataVolumeReconciler(cluster, clock, UPLOAD_KIND, HttpsProgressScraper(server.port),
                               stall_timeout=timedelta(minutes=10))
    uploads = UploadReconciler(cluster, clock, namespace=KEY.namespace)
    await dvs.reconcile(KEY)
    await bind(cluster)
    for _ in range(2):
        await uploads.reconcile(KEY)
        await dvs.reconcile(KEY)
    await cluster.patch_status("v1", "Pod", "cdi-upload-fedora", {"status": {
        "phase": "Running", "podIP": POD_IP, "containerStatuses": [
            {"name": "cdi-upload-server", "ready": True, "restartCount": 0,
             "state": {"running": {"startedAt": "2026-11-21T06:00:00Z"}}}]}}, KEY.namespace)
    await uploads.reconcile(KEY)
    await at(dvs, clock, 0.0)
    assert (await dv(cluster))["status"]["phase"] == "UploadReady"
    await at(dvs, clock, 3600.0)  # an hour without a byte: the user has not started
    doc = await dv(cluster)
    assert stalled(doc) is None and doc["status"]["progress"] == "N/A"  # upstream's N/A for uploads stays
    assert transfer_notes(doc) == {}  # nothing to show yet: empty cells, not "0 at 0B/s"

    progress.bytes_done(64 * MI, 256 * MI)
    await at(dvs, clock, 3610.0)
    assert transfer_notes(await dv(cluster))[ann.ANN_TRANSFER_BYTES_TOTAL] == str(256 * MI)
    await at(dvs, clock, 4210.0)
    condition = stalled(await dv(cluster))
    assert condition is not None and condition["status"] == "True"
    assert condition["message"] == ("no progress for 10m0s at 64Mi of 256Mi; the upload client may have stopped: "
                                    "resume the upload, or see `cdi logs pod/cdi-upload-fedora -n default`")


async def pod_running(cluster: Cluster, name: str, ip: str) -> None:
    await cluster.patch_status("v1", "Pod", name, {"status": {"phase": "Running", "podIP": ip, "containerStatuses": [
        {"name": "c", "ready": True, "restartCount": 0,
         "state": {"running": {"startedAt": "2026-11-21T06:00:00Z"}}}]}}, KEY.namespace)


async def test_a_host_assisted_clone_shows_bytes_and_stalls_only_while_its_source_pod_copies(
        cluster: Cluster, servers: list[MetricsServer]) -> None:
    """A clone into a class without a CSI driver (upstream's NoPopulator fallback: a host-assisted copy straight
    into the target claim), driven through the clone DataVolume, upload and clone source controllers. While its
    source is in use by another pod (`CloneSourceInUse`) nothing runs and nothing stalls; then the real
    `cdi-cloner` metrics endpoint serves bytes that advance, stop and move again."""
    clock = SteppedClock()
    await setup_storage(cluster, clock)  # type: ignore[arg-type]
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "golden", "namespace": KEY.namespace},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    await cluster.patch_status("v1", "PersistentVolumeClaim", "golden",
                               {"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}, KEY.namespace)
    await create_dv(cluster, {"pvc": {"namespace": KEY.namespace, "name": "golden"}})
    authorization = CloneAuthorization(None, lambda: clock.now().timestamp())
    await CloneDataVolumeReconciler(cluster, clock, "PersistentVolumeClaim", authorization).reconcile(KEY)
    await bind(cluster)
    target = await cluster.get("v1", "PersistentVolumeClaim", KEY.name, KEY.namespace)
    owner_uid = target["metadata"]["annotations"].get(ann.ANN_OWNER_UID) or target["metadata"]["uid"]
    progress = Progress()
    server = CloneMetricsServer(progress, owner_uid, f"{POD_IP}:0")
    servers.append(server)
    await server.start()
    assert server.port is not None
    scraper = HttpsProgressScraper(server.port)
    dvs = CloneDataVolumeReconciler(cluster, clock, "PersistentVolumeClaim", authorization, scraper=scraper,
                                    stall_timeout=timedelta(minutes=10))
    uploads = UploadReconciler(cluster, clock, namespace=KEY.namespace)
    clones = CloneSourceReconciler(cluster, clock, scraper, image="img", namespace=KEY.namespace)
    await uploads.reconcile(KEY)
    await pod_running(cluster, "cdi-upload-fedora", "127.1.0.5")
    await uploads.reconcile(KEY)
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": KEY.namespace},
                          "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [
                              {"name": "v", "persistentVolumeClaim": {"claimName": "golden"}}]}})
    await pod_running(cluster, "app", "127.1.0.6")
    await clones.reconcile(KEY)
    await at(dvs, clock, 0.0)
    await at(dvs, clock, 3600.0)  # an hour waiting for its source: not a transfer that stalls
    doc = await dv(cluster)
    assert doc["status"]["phase"] == "CloneInProgress"
    assert stalled(doc) is None and transfer_notes(doc) == {}
    assert ("Warning", "CloneSourceInUse") in {(e["type"], e["reason"])
                                               for e in (await cluster.list("v1", "Event", KEY.namespace)).items}

    await cluster.delete("v1", "Pod", "app", KEY.namespace)
    await clones.reconcile(KEY)
    source_pod = f"{target['metadata']['uid']}-source-pod"
    await pod_running(cluster, source_pod, POD_IP)
    progress.bytes_done(100 * MI, 1000 * MI)
    await clones.reconcile(KEY)  # upstream's percentage reaches the claim, and the DataVolume
    clock.seconds = 3700.0
    assert await dvs.reconcile(KEY) == Result(requeue_after=2.0)  # looked at again while the copy runs
    doc = await dv(cluster)
    assert doc["status"]["progress"] == "10.00%"
    assert transfer_notes(doc) == {ann.ANN_TRANSFER_BYTES_DONE: str(100 * MI),
                                   ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI)}
    progress.bytes_done(300 * MI, 1000 * MI)
    await at(dvs, clock, 3710.0)
    assert transfer_notes(await dv(cluster)) == {
        ann.ANN_TRANSFER_BYTES_DONE: str(300 * MI), ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI),
        ann.ANN_TRANSFER_RATE: str(20 * MI), ann.ANN_TRANSFER_ETA: "35"}

    await at(dvs, clock, 4309.0)  # the copy stops
    assert stalled(await dv(cluster)) is None
    await at(dvs, clock, 4310.0)
    await at(dvs, clock, 4312.0)
    condition = stalled(await dv(cluster))
    assert condition is not None and (condition["status"], condition["reason"]) == ("True", "TransferStalled")
    assert condition["message"] == (f"no progress for 10m0s at 300Mi of 1000Mi; the clone source may not reach its "
                                    f"target: see `cdi logs pod/{source_pod} -n default` and the target's upload pod")
    assert await stall_events(cluster) == [("Warning", "TransferStalled")]

    progress.bytes_done(310 * MI, 1000 * MI)
    await at(dvs, clock, 4320.0)
    condition = stalled(await dv(cluster))
    assert condition is not None and (condition["status"], condition["reason"]) == ("False", "TransferProgressing")
    assert await stall_events(cluster) == [("Normal", "TransferProgressing"), ("Warning", "TransferStalled")]

    done = TerminationMessage("Clone Complete", preallocation_applied=False).to_json()
    await cluster.patch_status("v1", "Pod", "cdi-upload-fedora", {"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": done}}}]}}, KEY.namespace)
    await uploads.reconcile(KEY)
    await clones.reconcile(KEY)
    clock.seconds = 4330.0
    assert await dvs.reconcile(KEY) == Result()
    doc = await dv(cluster)
    assert doc["status"]["phase"] == "Succeeded"
    assert transfer_notes(doc) == {ann.ANN_TRANSFER_BYTES_DONE: str(1000 * MI),
                                   ann.ANN_TRANSFER_BYTES_TOTAL: str(1000 * MI)}
