"""The DataImportCron reconciler on both backends, step by step, with the clock and the source's digest
in the test's hands and the DataVolume controller's part played by the test: the first import at
once, re-imports on a new digest, the DataSource switching only after success, a failed import
leaving it on the last good image, garbage collection, retention on deletion, node pull refused."""

from __future__ import annotations

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.controller import FINALIZER, DataImportCronReconciler
from cdi.runtime.types import Key
from tests.dataimportcron.conftest import (
    DV_API,
    NS,
    FakePoller,
    StepClock,
    condition,
    cron_doc,
    cron_of,
    digest,
    event_reasons,
    finish_import,
    names,
    set_dv_phase,
)

KEY = Key(NS, "fedora-cron")


async def release_claim(cluster: Cluster, name: str) -> None:
    """kube-controller-manager's part on the test API server (which runs no pvc-protection controller)."""
    try:
        await cluster.patch("v1", "PersistentVolumeClaim", name, {"metadata": {"finalizers": None}}, NS)
        await cluster.delete("v1", "PersistentVolumeClaim", name, NS)
    except NotFound:
        pass


async def data_source(cluster: Cluster) -> dict[str, object]:
    return dict((await cluster.get(DV_API, "DataSource", "fedora", NS))["spec"]["source"])


def reconciler(cluster: Cluster, clock: StepClock, poller: FakePoller) -> DataImportCronReconciler:
    return DataImportCronReconciler(cluster, clock, {"registry": poller, "http": poller, "s3": poller})


async def test_first_import_at_once_and_datasource_only_after_success(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller(digest("a"))
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc())
    result = await crons.reconcile(KEY)
    name = "fedora-" + "a" * 12
    dv = await cluster.get(DV_API, "DataVolume", name, NS)
    assert dv["spec"]["source"]["registry"]["url"] == f"docker://127.0.0.1:5000/disks/fedora@{digest('a')}"
    assert dv["metadata"]["labels"][ann.LABEL_DATA_IMPORT_CRON] == "fedora-cron"
    assert dv["metadata"]["annotations"][ann.ANN_IMMEDIATE_BINDING] == "true"
    cron = await cron_of(cluster)
    notes = cron["metadata"]["annotations"]
    assert notes[ann.ANN_SOURCE_DESIRED_DIGEST] == digest("a")
    assert notes[ann.ANN_NEXT_CRON_TIME] == "2026-11-21T12:00:00Z"
    assert notes[ann.ANN_LAST_CRON_TIME] == "2026-11-21T06:00:00Z"
    assert FINALIZER in cron["metadata"]["finalizers"]
    assert cron["status"]["currentImports"] == [{"DataVolumeName": name, "Digest": digest("a")}]
    assert cron["status"]["lastExecutionTimestamp"] == "2026-11-21T06:00:00Z"
    assert condition(cron, "UpToDate") == ("False", "Outdated")
    assert result.requeue_after == 6 * 3600 + 1
    assert await data_source(cluster) == {}  # created, pointing at nothing yet

    await set_dv_phase(cluster, name, "ImportInProgress")
    await crons.reconcile(KEY)
    cron = await cron_of(cluster)
    assert condition(cron, "Progressing") == ("True", "ImportProgressing")
    assert condition(cron, "UpToDate") == ("False", "ImportProgressing")
    assert await data_source(cluster) == {}

    await finish_import(cluster, name)
    await crons.reconcile(KEY)
    cron = await cron_of(cluster)
    assert cron["status"]["lastImportedPVC"] == {"namespace": NS, "name": name}
    assert condition(cron, "UpToDate") == ("True", "UpToDate")
    assert condition(cron, "Progressing") == ("False", "NoImport")
    assert cron["status"]["sourceFormat"] == "pvc"
    assert (await data_source(cluster))["pvc"] == {"namespace": NS, "name": name}
    assert len(poller.polled) == 1  # not polled again before nextCronTime
    assert {"DigestUpdated", "ImportCreated", "DataSourceCreated", "ImportSucceeded",
            "DataSourceUpdated"} <= set(await event_reasons(cluster))


async def test_new_digest_reimports_and_a_failed_import_keeps_the_last_good_image(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller(digest("a"))
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)
    first = "fedora-" + "a" * 12
    await finish_import(cluster, first)
    await crons.reconcile(KEY)

    poller.digest = digest("b")
    clock.advance(hours=6)  # the next fire time
    await crons.reconcile(KEY)
    second = "fedora-" + "b" * 12
    assert second in await names(cluster, "DataVolume")
    assert condition(await cron_of(cluster), "UpToDate") == ("False", "Outdated")
    await set_dv_phase(cluster, second, "ImportInProgress", running=("ImagePullFailed", "failed to pull image"))
    await crons.reconcile(KEY)
    assert (await data_source(cluster))["pvc"] == {"namespace": NS, "name": first}

    poller.digest = digest("c")
    clock.advance(hours=12)
    await crons.reconcile(KEY)  # the stuck import is replaced by the newer digest's
    third = "fedora-" + "c" * 12
    assert await names(cluster, "DataVolume") == [first, third]
    assert (await data_source(cluster))["pvc"] == {"namespace": NS, "name": first}
    await finish_import(cluster, third)
    await crons.reconcile(KEY)
    assert (await data_source(cluster))["pvc"] == {"namespace": NS, "name": third}
    assert "ImportFailed" in await event_reasons(cluster)


async def test_garbage_collection_keeps_exactly_imports_to_keep(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc(importsToKeep=2))
    for char in "abcd":
        poller.digest = digest(char)
        clock.advance(hours=12)
        await crons.reconcile(KEY)
        await finish_import(cluster, "fedora-" + char * 12)
        clock.advance(minutes=1)
        await crons.reconcile(KEY)
        await crons.reconcile(KEY)  # a claim whose DataVolume is gone is deleted on the next pass
    assert await names(cluster, "DataVolume") == ["fedora-" + "c" * 12, "fedora-" + "d" * 12]
    events = [e for e in (await cluster.list("v1", "Event", NS)).items if e["reason"] == "GarbageCollected"]
    assert sum(e.get("count", 1) for e in events) >= 2


async def test_garbage_collect_never_keeps_everything(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc(importsToKeep=1, garbageCollect="Never"))
    for char in "ab":
        poller.digest = digest(char)
        clock.advance(hours=12)
        await crons.reconcile(KEY)
        await finish_import(cluster, "fedora-" + char * 12)
        await crons.reconcile(KEY)
    assert len(await names(cluster, "DataVolume")) == 2


async def test_retention_none_deletes_what_the_cron_made(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc(retentionPolicy="None"))
    await crons.reconcile(KEY)
    await finish_import(cluster, "fedora-" + "a" * 12)
    await crons.reconcile(KEY)
    await cluster.delete(DV_API, "DataImportCron", "fedora-cron", NS)
    await crons.reconcile(KEY)
    assert await names(cluster, "DataImportCron") == []
    assert await names(cluster, "DataSource") == []
    assert await names(cluster, "DataVolume") == []


async def test_retain_all_keeps_the_datasource_and_imports(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)
    await cluster.delete(DV_API, "DataImportCron", "fedora-cron", NS)
    await crons.reconcile(KEY)
    assert await names(cluster, "DataImportCron") == []
    assert await names(cluster, "DataSource") == ["fedora"]
    assert await names(cluster, "DataVolume") == ["fedora-" + "a" * 12]


async def test_node_pull_is_refused_with_a_condition(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    url = "docker://quay.io/containerdisks/centos-stream:8"
    await cluster.create(cron_doc(source={"registry": {"url": url, "pullMethod": "node"}}))
    await crons.reconcile(KEY)
    await crons.reconcile(KEY)
    status, reason = condition(await cron_of(cluster), "UpToDate")
    assert (status, reason) == ("False", "NotSupported")
    assert await names(cluster, "DataVolume") == [] and poller.polled == []


async def test_empty_schedule_imports_when_a_user_sets_the_digest(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc(schedule=""))
    assert (await crons.reconcile(KEY)).requeue_after is None
    assert condition(await cron_of(cluster), "UpToDate") == ("False", "NoDigest")
    await cluster.patch(DV_API, "DataImportCron", "fedora-cron",
                        {"metadata": {"annotations": {ann.ANN_SOURCE_DESIRED_DIGEST: digest("e")}}}, NS)
    await crons.reconcile(KEY)
    assert await names(cluster, "DataVolume") == ["fedora-" + "e" * 12] and poller.polled == []


async def test_a_datasource_managed_by_another_cron_is_left_alone(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc("first"))
    await crons.reconcile(Key(NS, "first"))
    await cluster.create(cron_doc("second"))
    await crons.reconcile(Key(NS, "second"))
    assert await names(cluster, "DataVolume") == ["fedora-" + "a" * 12]
    assert "ErrDataSourceAlreadyManaged" in await event_reasons(cluster)


async def test_snapshot_format_keeps_snapshots_and_points_the_datasource_at_them(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    crons = reconciler(cluster, clock, poller)
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "csi.example",
                          "metadata": {"name": "local", "annotations": {ann.ANN_DEFAULT_STORAGE_CLASS: "true"}}})
    await cluster.create({"apiVersion": DV_API, "kind": "StorageProfile", "metadata": {"name": "local"},
                          "spec": {"dataImportCronSourceFormat": "snapshot"}})
    await cluster.patch_status(DV_API, "StorageProfile", "local",
                               {"status": {"dataImportCronSourceFormat": "snapshot", "storageClass": "local"}})
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)
    name = "fedora-" + "a" * 12
    await finish_import(cluster, name)
    await crons.reconcile(KEY)
    await crons.reconcile(KEY)  # woken again while the snapshot is not ready
    snapshot = await cluster.get("snapshot.storage.k8s.io/v1", "VolumeSnapshot", name, NS)
    assert snapshot["spec"]["source"] == {"persistentVolumeClaimName": name}
    assert snapshot["metadata"]["labels"][ann.LABEL_DATA_IMPORT_CRON] == "fedora-cron"
    assert condition(await cron_of(cluster), "UpToDate") == ("False", "ImportProgressing")
    await cluster.patch_status("snapshot.storage.k8s.io/v1", "VolumeSnapshot", name,
                               {"status": {"readyToUse": True}}, NS)
    await crons.reconcile(KEY)
    await crons.reconcile(KEY)
    cron = await cron_of(cluster)
    assert condition(cron, "UpToDate") == ("True", "UpToDate") and cron["status"]["sourceFormat"] == "snapshot"
    assert await data_source(cluster) == {"snapshot": {"namespace": NS, "name": name}}
    assert name not in await names(cluster, "DataVolume")  # the claim is not kept once the snapshot is ready


async def test_every_step_survives_a_restart(cluster: Cluster) -> None:
    """A new reconciler (a restarted `cdi serve`) before each step picks up where the last one stopped."""
    clock, poller = StepClock(), FakePoller(digest("a"))
    await cluster.create(cron_doc())
    await reconciler(cluster, clock, poller).reconcile(KEY)
    await reconciler(cluster, clock, poller).reconcile(KEY)  # nothing new: no second import, no second poll
    assert await names(cluster, "DataVolume") == ["fedora-" + "a" * 12] and len(poller.polled) == 1
    await finish_import(cluster, "fedora-" + "a" * 12)
    await reconciler(cluster, clock, poller).reconcile(KEY)
    poller.digest = digest("b")
    clock.advance(hours=6)
    await reconciler(cluster, clock, poller).reconcile(KEY)
    await finish_import(cluster, "fedora-" + "b" * 12)
    await reconciler(cluster, clock, poller).reconcile(KEY)
    assert (await data_source(cluster))["pvc"]["name"] == "fedora-" + "b" * 12  # type: ignore[index]


async def test_a_failed_poll_is_an_event_and_is_retried(cluster: Cluster) -> None:
    from cdi.controllers.dataimportcron.pollers import ImagePullFailed

    clock, poller = StepClock(), FakePoller(error=ImagePullFailed("failed to pull image: manifest unknown"))
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc())
    result = await crons.reconcile(KEY)
    assert result.requeue_after == 31
    events = [e for e in (await cluster.list("v1", "Event", NS)).items if e["reason"] == "ImagePullFailed"]
    assert events and events[0]["type"] == "Warning" and "manifest unknown" in events[0]["message"]
    assert condition(await cron_of(cluster), "UpToDate") == ("False", "NoDigest")
    poller.error = None
    clock.advance(seconds=30)
    await crons.reconcile(KEY)
    assert await names(cluster, "DataVolume") == ["fedora-" + "a" * 12]


async def test_an_existing_claim_for_the_digest_is_adopted(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller(digest("a"))
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "fedora-" + "a" * 12, "namespace": NS},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    await cluster.patch_status("v1", "PersistentVolumeClaim", "fedora-" + "a" * 12, {"status": {"phase": "Bound"}}, NS)
    await cluster.create(cron_doc())
    crons = reconciler(cluster, clock, poller)
    await crons.reconcile(KEY)
    assert await names(cluster, "DataVolume") == []
    await crons.reconcile(KEY)
    assert (await data_source(cluster))["pvc"] == {"namespace": NS, "name": "fedora-" + "a" * 12}
    claim = await cluster.get("v1", "PersistentVolumeClaim", "fedora-" + "a" * 12, NS)
    assert claim["metadata"]["labels"][ann.LABEL_DATA_IMPORT_CRON] == "fedora-cron"


async def test_a_new_default_class_imports_the_digest_again(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller(digest("a"))
    for name, default in (("fast", "true"), ("slow", "false")):
        await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "csi.example",
                              "metadata": {"name": name, "annotations": {ann.ANN_DEFAULT_STORAGE_CLASS: default}}})
    crons = reconciler(cluster, clock, poller)
    await cluster.create(cron_doc())
    await crons.reconcile(KEY)
    name = "fedora-" + "a" * 12
    await finish_import(cluster, name)
    await crons.reconcile(KEY)
    assert (await cron_of(cluster))["metadata"]["annotations"][ann.ANN_STORAGE_CLASS] == "fast"
    for sc, default in (("fast", "false"), ("slow", "true")):
        await cluster.patch("storage.k8s.io/v1", "StorageClass", sc,
                            {"metadata": {"annotations": {ann.ANN_DEFAULT_STORAGE_CLASS: default}}})
    await crons.reconcile(KEY)  # the import on the old class goes first
    assert name not in await names(cluster, "DataVolume")
    assert (await cron_of(cluster))["metadata"]["annotations"][ann.ANN_STORAGE_CLASS] == "fast"
    await release_claim(cluster, name)
    await crons.reconcile(KEY)  # then the new class is recorded
    await crons.reconcile(KEY)  # and the digest imported again
    assert (await cron_of(cluster))["metadata"]["annotations"][ann.ANN_STORAGE_CLASS] == "slow"
    assert await names(cluster, "DataVolume") == [name]
    assert "StorageClassChanged" in await event_reasons(cluster)


async def test_a_pvc_source_is_polled_by_its_uid(cluster: Cluster) -> None:
    clock, poller = StepClock(), FakePoller()
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "golden", "namespace": NS},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    uid = (await cluster.get("v1", "PersistentVolumeClaim", "golden", NS))["metadata"]["uid"]
    await cluster.create(cron_doc(source={"pvc": {"namespace": NS, "name": "golden"}}))
    await reconciler(cluster, clock, poller).reconcile(KEY)
    cron = await cron_of(cluster)
    assert cron["metadata"]["annotations"][ann.ANN_SOURCE_DESIRED_DIGEST] == f"uid:{uid}"
    assert await names(cluster, "DataVolume") == [f"fedora-{uid[:12]}"] and poller.polled == []
