"""The import and upload populators on both backends: PVC′ made from the source, the worker's state and
progress mirrored to the target, the volume handed over, PVC′ gone; the upload proxy's resolver follows
the target to PVC′; WaitForFirstConsumer is honoured; a deleted target takes PVC′ with it.

The tests play the parts of the PVC-level worker controllers and the binder (they write PVC′'s worker
annotations and bind claims), so only the populator runs."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.populators.controller import PopulatorReconciler
from cdi.controllers.upload.resolver import ClusterUploadResolver
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock
from tests.controllers.test_clone_populator import Crash, CrashingCluster
from uploadproxy.resolver import UploadNotReady

NS = "default"
KEY = Key(NS, "disk")
DRIVER = "local.csi.example"
PVC = ("v1", "PersistentVolumeClaim")


class FakeScraper:
    def __init__(self, value: float) -> None:
        self.value, self.calls = value, list[tuple[str, str]]()

    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        self.calls.append((pod_ip, owner_uid))
        return self.value


async def _setup(cluster: Cluster, kind: str, spec: dict[str, Any], mode: str = "Immediate") -> Object:
    for source_kind in ("VolumeImportSource", "VolumeUploadSource"):  # the reset does not know these kinds
        for old in (await cluster.list(CDI_API_VERSION, source_kind, NS)).items:
            await cluster.delete(CDI_API_VERSION, source_kind, old["metadata"]["name"], NS)
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local"},
                          "provisioner": DRIVER, "volumeBindingMode": mode})
    await cluster.create({"apiVersion": CDI_API_VERSION, "kind": kind, "metadata": {"name": "src", "namespace": NS},
                          "spec": spec})
    ref = {"apiGroup": "cdi.kubevirt.io", "kind": kind, "name": "src"}
    return await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                 "metadata": {"name": "disk", "namespace": NS},
                                 "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                          "resources": {"requests": {"storage": "1Gi"}}, "dataSourceRef": ref}})


async def _claim(cluster: Cluster, name: str) -> Object | None:
    try:
        return await cluster.get(*PVC, name, NS)
    except NotFound:
        return None


async def _prime(cluster: Cluster, target: Object) -> Object:
    found = await _claim(cluster, f"prime-{target['metadata']['uid']}")
    assert found is not None
    return found


async def _bind(cluster: Cluster, claim: Object, volume: str) -> None:
    """The provisioner and the PV controller: a volume for the claim, bound both ways."""
    meta = claim["metadata"]
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                   "storageClassName": "local", "persistentVolumeReclaimPolicy": "Delete",
                                   "csi": {"driver": DRIVER, "volumeHandle": volume},
                                   "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                "namespace": NS, "name": meta["name"], "uid": meta["uid"]}}})
    await _bound(cluster, claim, volume)


async def _bound(cluster: Cluster, claim: Object, volume: str) -> None:
    await cluster.patch(*PVC, claim["metadata"]["name"], {"spec": {"volumeName": volume}}, NS)
    await cluster.patch_status(*PVC, claim["metadata"]["name"], {"status": {
        "phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}, NS)


async def _worker(cluster: Cluster, claim: Object, pod_name: str, ip: str, notes: dict[str, str]) -> None:
    """What the PVC-level worker controller and kubelet do: a running pod, its state on the claim."""
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": NS},
                          "spec": {"containers": [{"name": "worker", "image": "cdi"}]}})
    await cluster.patch_status("v1", "Pod", pod_name, {"status": {"phase": "Running", "podIP": ip}}, NS)
    await cluster.patch(*PVC, claim["metadata"]["name"], {"metadata": {"annotations": notes}}, NS)


async def _reasons(cluster: Cluster) -> list[str]:
    events = (await cluster.list("v1", "Event", NS)).items
    return sorted(e["reason"] for e in events if e["involvedObject"]["name"] == "disk")


def _notes(claim: Object | None) -> dict[str, str]:
    return dict(((claim or {}).get("metadata") or {}).get("annotations") or {})


async def test_import_through_pvc_prime_ends_with_the_volume_on_the_target(cluster: Cluster,
                                                                           clock: FixedClock) -> None:
    target = await _setup(cluster, "VolumeImportSource", {"source": {"http": {"url": "http://h/disk.img"}}})
    scraper = FakeScraper(45.271)
    populator = PopulatorReconciler(cluster, clock, scraper)
    assert (await populator.reconcile(KEY)).requeue_after is None
    prime = await _prime(cluster, target)
    assert _notes(prime)[ann.ANN_ENDPOINT] == "http://h/disk.img"
    assert _notes(prime)[ann.ANN_POPULATOR_KIND] == "VolumeImportSource"
    assert prime["metadata"]["ownerReferences"][0]["uid"] == target["metadata"]["uid"]
    assert _notes(await _claim(cluster, "disk"))[ann.ANN_PVC_PRIME_NAME] == prime["metadata"]["name"]
    assert await _reasons(cluster) == ["CreatedPVCPrimeSuccessfully"]

    await _bind(cluster, prime, "pv-prime")
    pod = f"importer-{prime['metadata']['name']}"
    await _worker(cluster, prime, pod, "10.0.0.9", {ann.ANN_IMPORT_POD: pod, ann.ANN_POD_PHASE: "Running",
                                                     ann.ANN_RUNNING_CONDITION: "true"})
    await record_event(cluster, prime, "Warning", "ErrImportFailed", "expected status code 200, got 404",
                       component="import-controller", clock=clock.now)
    assert (await populator.reconcile(KEY)).requeue_after == 2.0
    await populator.reconcile(KEY)  # forwarded once, not counted again
    forwarded = [e for e in (await cluster.list("v1", "Event", NS)).items if e["reason"] == "ErrImportFailed"
                 and e["involvedObject"]["name"] == "disk"]
    assert [(e["message"], e.get("count", 1)) for e in forwarded] == [
        (f"[{prime['metadata']['name']}] : expected status code 200, got 404", 1)]
    shown = _notes(await _claim(cluster, "disk"))
    assert (shown[ann.ANN_POD_PHASE], shown[ann.ANN_RUNNING_CONDITION], shown[ann.ANN_POPULATOR_PROGRESS]) == (
        "Running", "true", "45.27%")
    assert set(scraper.calls) == {("10.0.0.9", target["metadata"]["uid"])}  # the importer labels it with the target

    await cluster.patch(*PVC, prime["metadata"]["name"], {"metadata": {
        "annotations": {ann.ANN_POD_PHASE: "Succeeded"},
        "labels": {"instancetype.kubevirt.io/default-preference": "fedora"}}}, NS)
    await populator.reconcile(KEY)
    volume = await cluster.get("v1", "PersistentVolume", "pv-prime")
    assert volume["spec"]["claimRef"]["uid"] == target["metadata"]["uid"]
    done = await _claim(cluster, "disk")
    assert done is not None and done["metadata"]["labels"]["instancetype.kubevirt.io/default-preference"] == "fedora"
    assert (_notes(done)[ann.ANN_POD_PHASE], _notes(done)[ann.ANN_POPULATOR_PROGRESS]) == ("Succeeded", "100.0%")
    assert await _reasons(cluster) == ["CreatedPVCPrimeSuccessfully", "ErrImportFailed", "ImportSucceeded"]

    await _bound(cluster, done, "pv-prime")  # the binder binds the target to the volume handed to it
    await cluster.patch_status(*PVC, prime["metadata"]["name"], {"status": {"phase": "Lost"}}, NS)
    await populator.reconcile(KEY)
    left = await _claim(cluster, prime["metadata"]["name"])
    assert left is None or left["metadata"].get("deletionTimestamp")  # (kept a while by pvc-protection)
    assert (await populator.reconcile(KEY)).requeue_after is None


async def test_the_upload_proxy_follows_the_target_to_pvc_prime(cluster: Cluster, clock: FixedClock) -> None:
    target = await _setup(cluster, "VolumeUploadSource", {"contentType": "kubevirt"})
    resolver = ClusterUploadResolver(cluster)
    with pytest.raises(UploadNotReady, match="PVC' wasn't created yet"):
        await resolver.resolve(NS, "disk")
    populator = PopulatorReconciler(cluster, clock)
    await populator.reconcile(KEY)
    prime = await _prime(cluster, target)
    assert ann.ANN_UPLOAD_REQUEST in _notes(prime) and ann.ANN_SOURCE not in _notes(prime)
    with pytest.raises(UploadNotReady, match="upload server for PVC disk is not ready"):
        await resolver.resolve(NS, "disk")

    name = prime["metadata"]["name"]
    await _bind(cluster, prime, "pv-upload")
    await _worker(cluster, prime, f"cdi-upload-{name}", "10.0.0.7", {
        ann.ANN_UPLOAD_POD: f"cdi-upload-{name}", ann.ANN_POD_PHASE: "Running", ann.ANN_POD_READY: "true"})
    found = await resolver.resolve(NS, "disk")
    assert (found.url, found.server_hostname) == ("https://10.0.0.7:8443", f"cdi-upload-{name}.{NS}.svc")
    await populator.reconcile(KEY)
    shown = _notes(await _claim(cluster, "disk"))
    assert (shown[ann.ANN_POD_PHASE], shown[ann.ANN_POD_READY]) == ("Running", "true")  # what image-upload waits for
    assert ann.ANN_POPULATOR_PROGRESS not in shown


async def test_wait_for_first_consumer_then_pvc_prime_on_its_node(cluster: Cluster, clock: FixedClock) -> None:
    target = await _setup(cluster, "VolumeImportSource", {"source": {"blank": {}}}, mode="WaitForFirstConsumer")
    populator = PopulatorReconciler(cluster, clock)
    await populator.reconcile(KEY)
    assert await _claim(cluster, f"prime-{target['metadata']['uid']}") is None
    await cluster.patch(*PVC, "disk", {"metadata": {"annotations": {ann.ANN_SELECTED_NODE: "node-1"}}}, NS)
    await populator.reconcile(KEY)
    prime = await _prime(cluster, target)
    assert (_notes(prime)[ann.ANN_SELECTED_NODE], _notes(prime)[ann.ANN_SOURCE]) == ("node-1", "none")


async def test_a_deleted_target_takes_pvc_prime_with_it(cluster: Cluster, clock: FixedClock) -> None:
    target = await _setup(cluster, "VolumeImportSource", {"source": {"blank": {}}})
    populator = PopulatorReconciler(cluster, clock)
    await populator.reconcile(KEY)
    prime = await _prime(cluster, target)
    # A finalizer keeps the deleted target visible, as pvc-protection does while a pod uses it.
    await cluster.patch(*PVC, "disk", {"metadata": {"finalizers": ["example.com/hold"]}}, NS)
    await cluster.delete(*PVC, "disk", NS)
    await populator.reconcile(KEY)
    left = await _claim(cluster, prime["metadata"]["name"])
    assert left is None or left["metadata"].get("deletionTimestamp")
    await cluster.patch(*PVC, "disk", {"metadata": {"finalizers": None}}, NS)


async def _node_step(cluster: Cluster) -> None:
    """The storage, the worker controllers and the binder, one pass: bind PVC′, finish its worker, bind the
    target to the volume handed to it (PVC′ then Lost)."""
    claims = (await cluster.list(*PVC, NS)).items
    volumes = (await cluster.list("v1", "PersistentVolume")).items
    for claim in claims:
        meta, notes = claim["metadata"], _notes(claim)
        handed = [v for v in volumes if v["spec"]["claimRef"]["uid"] == meta["uid"]]
        if meta["name"].startswith("prime-") and not claim["spec"].get("volumeName") and not handed:
            await _bind(cluster, claim, f"pv-{meta['uid']}")
        elif meta["name"].startswith("prime-") and ann.ANN_POD_PHASE not in notes:
            await cluster.patch(*PVC, meta["name"], {"metadata": {"annotations": {ann.ANN_POD_PHASE: "Succeeded"}}},
                                NS)
        elif meta["name"] == "disk" and handed and not claim["spec"].get("volumeName"):
            await _bound(cluster, claim, handed[0]["metadata"]["name"])
            for prime in claims:
                if prime["metadata"]["name"].startswith("prime-"):
                    await cluster.patch_status(*PVC, prime["metadata"]["name"], {"status": {"phase": "Lost"}}, NS)


@pytest.mark.parametrize("limit", [1, 2, math.inf], ids=["crash-after-1st-write", "crash-after-2nd-write", "no-crash"])
async def test_population_finishes_whatever_call_the_controller_dies_after(cluster: Cluster, clock: FixedClock,
                                                                           limit: float) -> None:
    """A new populator each time (as after a restart), its client dying after its first (or second) write
    of every reconcile: the population still ends with the target bound, PVC′ made once and gone."""
    target = await _setup(cluster, "VolumeImportSource", {"source": {"http": {"url": "http://h/disk.img"}}})
    creates: Counter[str] = Counter()
    for _ in range(40):
        populator = PopulatorReconciler(CrashingCluster(cluster, limit, creates), clock)
        try:
            await populator.reconcile(KEY)
        except Crash:
            pass
        done = await _claim(cluster, "disk")
        left = await _claim(cluster, f"prime-{target['metadata']['uid']}")
        if done and done["spec"].get("volumeName") and (left is None or left["metadata"].get("deletionTimestamp")):
            break
        await _node_step(cluster)
    else:
        raise AssertionError(f"population did not finish: {_notes(done)}")
    volume = await cluster.get("v1", "PersistentVolume", done["spec"]["volumeName"])
    assert volume["spec"]["claimRef"]["uid"] == target["metadata"]["uid"]
    assert (_notes(done)[ann.ANN_POD_PHASE], _notes(done)[ann.ANN_POPULATOR_PROGRESS]) == ("Succeeded", "100.0%")
    claims = {name: count for name, count in creates.items() if name.startswith("PersistentVolumeClaim/")}
    assert claims == {f"PersistentVolumeClaim/prime-{target['metadata']['uid']}": 1}
