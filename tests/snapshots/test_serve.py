"""Snapshots through a real `cdi serve` and the `cdi` CLI: the node agent runs the snapshot controller on
its reflink pool; a snapshot is restored with its bytes, survives a restart, and is freed with its object."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane, release_storage


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(tmp_path / "home")
    control_plane.start()
    try:
        yield control_plane
    finally:
        control_plane.stop()
        release_storage(control_plane.home)


def claim(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}, **spec}}


def bound(plane: ControlPlane, name: str) -> Path:
    plane.wait_for(lambda: ((plane.get("pvc", name) or {}).get("status") or {}).get("phase") == "Bound",
                   f"claim {name} Bound")
    return plane.volume_path(name) / "disk.img"


def test_a_snapshot_is_restored_survives_a_restart_and_is_freed(plane: ControlPlane) -> None:
    plane.apply(claim("golden"))
    data = os.urandom(4 * 1024 * 1024)
    bound(plane, "golden").write_bytes(data)
    plane.apply({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                 "metadata": {"name": "golden-snap", "namespace": "default"},
                 "spec": {"source": {"persistentVolumeClaimName": "golden"}}})
    ready = plane.wait_for(lambda: (vs := plane.get("vs", "golden-snap")) and (vs.get("status") or {}).get(
        "readyToUse") and vs, "snapshot readyToUse")
    assert ready["status"]["restoreSize"] == "64Mi"
    assert plane.get("volumesnapshotclass", "local-snapshots") is not None
    assert plane.get("csidriver", "local.csi.pycdi.io") is not None
    plane.apply(claim("restored", dataSourceRef={"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                                 "name": "golden-snap"}))
    assert hashlib.sha256(bound(plane, "restored").read_bytes()).digest() == hashlib.sha256(data).digest()

    plane.stop()
    plane.start()
    assert bound(plane, "restored").read_bytes() == data
    assert (plane.home / "pools/default/reflink-pool.img").exists()

    content = ready["status"]["boundVolumeSnapshotContentName"]
    snapshot_file = plane.home / "pools/default/reflink/snapshots" / f"{content}.img"
    assert snapshot_file.exists()
    plane.cdi("delete", "vs", "golden-snap")
    plane.wait_for(lambda: plane.get("vsc", content) is None and not snapshot_file.exists(),
                   "the content and its data deleted")
