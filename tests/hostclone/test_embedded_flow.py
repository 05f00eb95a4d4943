"""A PVC-level host-assisted clone on the embedded backend with real processes: the upload controller and
the clone source controller reconciled in turn, the local pod runner running the real `cdi-uploadserver`
and `cdi-cloner` (mutual TLS with the certificates the controllers issued), until the target says
`k8s.io/CloneOf: "true"`. Then the bytes, the sparseness, the events and what is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.hostclone.controller import CloneSourceReconciler
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.upload.controller import UploadReconciler
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key, SystemClock
from tests.hostclone.support import SOURCE_SIZE, MiB, allocated, data_bytes, loop_device, sha256_of, write_layout
from tests.pods.support import bind, claim, storage_class

NS = "default"
TARGET = Key(NS, "target")


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedCluster, PodRunner]]:
    async with EmbeddedCluster(tmp_path / "cluster.db", poll_interval=0.02) as store:
        state = tmp_path / "state"
        state.mkdir()
        runner = PodRunner(store, state, backoff_base=0.2, backoff_cap=0.8, retry_after=0.2)
        try:
            yield store, runner
        finally:
            await runner.close()


async def drive(store: EmbeddedCluster, runner: PodRunner, uploads: UploadReconciler,
                clones: CloneSourceReconciler, timeout: float = 60.0) -> dict[str, str]:
    """Reconcile everything in turn until the clone is done (or failed); the target's annotations."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await uploads.reconcile(TARGET)
        await clones.reconcile(TARGET)
        for pod in (await store.list("v1", "Pod", NS)).items:
            await runner.reconcile(Key(NS, pod["metadata"]["name"]))
        notes = dict((await store.get("v1", "PersistentVolumeClaim", "target", NS))["metadata"]["annotations"])
        if notes.get(ann.ANN_CLONE_OF) == "true" or notes.get(ann.ANN_IMPORT_FATAL_ERROR) == "true":
            for _ in range(3):  # let the controllers finish their clean-up
                await uploads.reconcile(TARGET)
                await clones.reconcile(TARGET)
            return notes
        assert loop.time() < deadline, f"clone did not finish; target annotations: {notes}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("target_mode", ["Filesystem", "Block"])
async def test_pvc_level_clone_with_real_pods(embedded: tuple[EmbeddedCluster, PodRunner], tmp_path: Path,
                                              target_mode: str) -> None:
    store, runner = embedded
    source_dir, target_dir = tmp_path / "pv-source", tmp_path / "pv-target"
    source_dir.mkdir()
    target_dir.mkdir()
    write_layout(source_dir / "disk.img")
    await store.create(storage_class("local", "Immediate"))
    await store.create(claim("source"))
    await bind(store, "source", source_dir)
    target_claim = claim("target", mode=target_mode)
    target_claim["metadata"]["annotations"] = {ann.ANN_CLONE_REQUEST: f"{NS}/source"}
    await store.create(target_claim)
    clock = SystemClock()
    uploads = UploadReconciler(store, clock, namespace=NS)
    clones = CloneSourceReconciler(store, clock, HttpsProgressScraper(), namespace=NS)
    with loop_device(tmp_path / "target-device.img", 48 * MiB) as device:
        await bind(store, "target", device if target_mode == "Block" else target_dir)
        notes = await drive(store, runner, uploads, clones)
        written = device if target_mode == "Block" else target_dir / "disk.img"
        assert notes.get(ann.ANN_IMPORT_FATAL_ERROR) is None, notes
        assert sha256_of(written, SOURCE_SIZE) == sha256_of(source_dir / "disk.img", SOURCE_SIZE)
    assert (notes[ann.ANN_CLONE_OF], notes[ann.ANN_POD_PHASE], notes[ann.ANN_POPULATOR_PROGRESS]) == (
        "true", "Succeeded", "100.00%")
    if target_mode == "Filesystem":
        assert allocated(target_dir / "disk.img") <= data_bytes() + 2 * MiB  # holes stayed holes
    reasons = {e["reason"] for e in (await store.list("v1", "Event", NS)).items}
    assert "CloneSucceeded" in reasons
    assert not (await store.list("v1", "Pod", NS)).items  # source and upload pods gone
    assert not [s for s in (await store.list("v1", "Secret", NS)).items
                if s["metadata"]["name"].endswith("-source-pod")]
    target = await store.get("v1", "PersistentVolumeClaim", "target", NS)
    assert ann.FINALIZER_CLONE_SOURCE not in (target["metadata"].get("finalizers") or [])
