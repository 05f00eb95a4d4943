"""What CDI knows about storage provisioners: the claim property sets (access mode and volume mode
pairs) and clone strategy to advise in a StorageProfile, as upstream's storage capabilities table,
plus the embedded mode's own provisioner. Pure data; read by the StorageProfile controller."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_PROVISIONER = "pycdi.local/hostpath"

RWO, ROX, RWX = "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"
FS, BLOCK = "Filesystem", "Block"


@dataclass(frozen=True)
class Capabilities:
    claim_property_sets: tuple[tuple[str, str], ...]  # (access mode, volume mode), in preference order
    clone_strategy: str | None = None
    data_import_cron_source_format: str | None = None
    minimum_pvc_size: str | None = None


_CEPH_RBD = Capabilities(((RWX, BLOCK), (RWO, BLOCK), (RWO, FS)), "csi-clone")
_CEPH_FS = Capabilities(((RWX, FS), (RWO, FS)), "csi-clone")

CAPABILITIES: dict[str, Capabilities] = {
    # The embedded local provisioner: one-node loop-device volumes; clones are host-assisted copies for now.
    LOCAL_PROVISIONER: Capabilities(((RWO, FS), (RWO, BLOCK)), "copy", "pvc"),
    "kubevirt.io.hostpath-provisioner": Capabilities(((RWO, FS),), None, "pvc"),
    "kubevirt.io/hostpath-provisioner": Capabilities(((RWO, FS),), None, "pvc"),
    "rbd.csi.ceph.com": _CEPH_RBD,
    "rook-ceph.rbd.csi.ceph.com": Capabilities(_CEPH_RBD.claim_property_sets, "csi-clone", "snapshot"),
    "openshift-storage.rbd.csi.ceph.com": Capabilities(_CEPH_RBD.claim_property_sets, "csi-clone", "snapshot"),
    "cephfs.csi.ceph.com": _CEPH_FS,
    "rook-ceph.cephfs.csi.ceph.com": _CEPH_FS,
    "openshift-storage.cephfs.csi.ceph.com": _CEPH_FS,
    "nfs.csi.k8s.io": Capabilities(((RWX, FS),)),
    "ebs.csi.aws.com": Capabilities(((RWO, BLOCK),)),
    "pd.csi.storage.gke.io": Capabilities(((RWO, BLOCK), (RWO, FS)), "snapshot", "snapshot"),
    "disk.csi.azure.com": Capabilities(((RWO, BLOCK),)),
    "file.csi.azure.com": Capabilities(((RWX, FS),)),
    "topolvm.io": Capabilities(((RWO, BLOCK), (RWO, FS)), "copy"),
    "topolvm.cybozu.com": Capabilities(((RWO, BLOCK), (RWO, FS)), "copy"),
    "linstor.csi.linbit.com": Capabilities(((RWX, BLOCK), (RWO, BLOCK), (RWO, FS), (ROX, BLOCK), (ROX, FS))),
    "pxd.portworx.com": Capabilities(((RWX, BLOCK), (RWX, FS), (RWO, BLOCK), (RWO, FS)), "csi-clone"),
    "csi.vsphere.vmware.com": Capabilities(((RWO, BLOCK), (RWO, FS))),
    "driver.longhorn.io": Capabilities(((RWO, BLOCK),)),
    "csi-powerstore.dellemc.com": Capabilities(((RWX, BLOCK), (RWO, BLOCK), (RWO, FS), (ROX, BLOCK)), "copy"),
    "hspc.csi.hitachi.com": Capabilities(((RWX, BLOCK), (RWO, BLOCK), (RWO, FS)), "csi-clone", None, "1Gi"),
}

# Provisioners that make no volumes CDI can fill; their profiles are complete with no property sets.
UNSUPPORTED_PROVISIONERS = frozenset({
    "openshift-storage.noobaa.io/obc", "openshift-storage.ceph.rook.io/bucket", "rook-ceph.ceph.rook.io/bucket",
    "stork-snapshot", "kubernetes.io/no-provisioner",
})
