"""A DataVolume's disk is the size the user asked for, on embedded ext4 and xfs volumes of every size.

The chain, each link the code the product runs: the DataVolume controller asks for a PVC of
`required_space(overhead, request)` (`cdi.sizing`); the embedded provisioner binds it to a volume on a
real loop device (`ClaimReconciler`, `LoopPool`); the importer measures the mounted volume with statfs,
capped by the PVC's request (`importer.target.discover_target`), and makes the disk
`usable_space(overhead, available)` (`importer.blank`, `importer.pipeline`). Images are sparse, so a
100Gi volume costs a few MiB of real disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.volumes.loop import LoopPool
from cdi.quantity import parse_quantity
from cdi.sizing import DEFAULT_FILESYSTEM_OVERHEAD, required_space, usable_space
from importer.target import discover_target
from tests.volumes.conftest import Reconcilers
from tests.volumes.support import MIB, mounted_at, pvc, settle, volume_path

SIZES = ("64Mi", "128Mi", "1Gi", "2Gi", "10Gi", "100Gi")
CLASSES = {"ext4": "local", "xfs": "local-xfs"}


@pytest.mark.parametrize("fs_type", sorted(CLASSES))
@pytest.mark.parametrize("request_text", SIZES)
async def test_the_disk_is_the_requested_size(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                              loop_reconcilers: Reconcilers, fs_type: str,
                                              request_text: str) -> None:
    requested = parse_quantity(request_text)
    pvc_request = required_space(DEFAULT_FILESYSTEM_OVERHEAD, requested)
    await cluster.create(pvc("disk", str(pvc_request), storage_class=CLASSES[fs_type]))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim = await cluster.get("v1", "PersistentVolumeClaim", "disk", "default")
    volume = await cluster.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
    path = Path(volume_path(volume))
    target = discover_target(path, pvc_request)
    disk = usable_space(DEFAULT_FILESYSTEM_OVERHEAD, target.available)

    assert disk == requested
    assert mounted_at(str(path)) == fs_type
    capacity = parse_quantity(claim["status"]["capacity"]["storage"])
    assert capacity == -(-pvc_request // MIB) * MIB
    stats = os.statvfs(path)
    assert stats.f_bavail * stats.f_frsize >= capacity  # the files get the whole capacity
    image = loop_pool.image_path(volume["metadata"]["name"])
    assert image.stat().st_blocks * 512 < 80 * MIB  # sparse, whatever the size

