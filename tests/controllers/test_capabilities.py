"""The capabilities table: every provisioner the seeds' storage chapter names (8.2.1.1) gets upstream's
claim property sets and clone strategy in its StorageProfile, and parameters refine the key as upstream does."""

from __future__ import annotations

import pytest

from cdi.controllers import storageprofile
from cdi.controllers.capabilities import UNKNOWN_KEY, provisioner_key

NOW = "2026-11-21T06:00:00Z"
B, F = "Block", "Filesystem"
RWX_B, RWO_B, RWO_F, ROX_B, ROX_F = (("ReadWriteMany", B), ("ReadWriteOnce", B), ("ReadWriteOnce", F),
                                     ("ReadOnlyMany", B), ("ReadOnlyMany", F))
RWX_F = ("ReadWriteMany", F)


def profile(provisioner: str, **parameters: str) -> dict[str, object]:
    storage_class = {"metadata": {"name": "sc"}, "provisioner": provisioner, "parameters": parameters}
    return storageprofile.desired_status(storage_class, {}, NOW)


# The seeds' table of storage providers (8.2.1.1), with upstream's claim property sets.
@pytest.mark.parametrize(("provisioner", "sets", "clone"), [
    ("rook-ceph.rbd.csi.ceph.com", [RWX_B, RWO_B, RWO_F], "csi-clone"),
    ("openshift-storage.rbd.csi.ceph.com", [RWX_B, RWO_B, RWO_F], "csi-clone"),
    ("csi-vxflexos.dellemc.com", [RWX_B, RWO_B, RWO_F, ROX_B, ROX_F], "csi-clone"),
    ("csi-isilon.dellemc.com", [RWX_F, RWO_F, ROX_F], "csi-clone"),
    ("csi-powermax.dellemc.com", [RWX_B, RWO_B, RWO_F, ROX_B], "csi-clone"),
    ("csi-powerstore.dellemc.com", [RWX_B, RWO_B, RWO_F, ROX_B], "copy"),  # upstream now advises copy
    ("hspc.csi.hitachi.com", [RWX_B, RWO_B, RWO_F], "csi-clone"),
    ("csi.hpe.com", [RWX_B, RWO_B, RWO_F], "csi-clone"),
    ("spectrumscale.csi.ibm.com", [RWX_F, RWO_F], "csi-clone"),
    ("cephfs.csi.ceph.com", [RWX_F, RWO_F], "csi-clone"),
    ("openshift-storage.cephfs.csi.ceph.com", [RWX_F, RWO_F], "csi-clone"),
])
def test_seed_table_provisioners(provisioner: str, sets: list[tuple[str, str]], clone: str) -> None:
    status = profile(provisioner)
    assert status["claimPropertySets"] == [{"accessModes": [mode], "volumeMode": volume_mode}
                                           for mode, volume_mode in sets]
    assert status["cloneStrategy"] == clone
    assert status["conditions"][0]["reason"] == "RecognizedProvisioner"  # type: ignore[index]


@pytest.mark.parametrize(("provisioner", "parameters", "key"), [
    ("ebs.csi.aws.com", {"type": "gp3"}, "ebs.csi.aws.com/gp"),
    ("ebs.csi.aws.com", {"type": "sc1"}, "ebs.csi.aws.com"),
    ("csi-powerstore.dellemc.com", {"csi.storage.k8s.io/fstype": "NFS"}, "csi-powerstore.dellemc.com/nfs"),
    ("csi.trident.netapp.io", {"backendType": "ontap-nas-economy"}, "csi.trident.netapp.io/ontap-nas"),
    ("csi.trident.netapp.io", {"backendType": "solidfire-san"}, UNKNOWN_KEY),
    ("pxd.portworx.com", {"backend": "pure_block"}, "pxd.portworx.com/pure_block"),
    ("pxd.portworx.com", {"sharedv4_mount_options": "vers=3.0,nolock"}, "pxd.portworx.com/nfs"),
    ("driver.longhorn.io", {"migratable": "true"}, "driver.longhorn.io/migratable"),
    ("pd.csi.storage.gke.io", {"type": "hyperdisk-balanced"}, "pd.csi.storage.gke.io/hyperdisk"),
    ("csi.san.synology.com", {}, "csi.san.synology.com/iscsi"),
    ("rook-ceph.rbd.csi.ceph.com", {"pool": "x"}, "rook-ceph.rbd.csi.ceph.com"),
])
def test_parameters_refine_the_key(provisioner: str, parameters: dict[str, str], key: str) -> None:
    assert provisioner_key(provisioner, parameters) == key


def test_unknown_parameters_leave_the_profile_unrecognized() -> None:
    status = profile("csi.trident.netapp.io", backendType="solidfire-san")
    assert status["claimPropertySets"] == []
    assert status["conditions"][0]["status"] == "False"  # type: ignore[index]


def test_minimum_size_and_cron_format_come_from_the_refined_key() -> None:
    status = profile("pd.csi.storage.gke.io", type="hyperdisk-balanced")
    assert status["dataImportCronSourceFormat"] == "snapshot"
    assert status["claimPropertySets"][0] == {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}  # type: ignore[index]
