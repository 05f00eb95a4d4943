"""What CDI knows about storage provisioners, as upstream's storage capabilities table does: for each
provisioner key, the claim property sets (access mode, volume mode) to advise in a StorageProfile, in
preference order, the advised clone strategy, the DataImportCron source format and a minimum PVC
size; plus the embedded mode's own provisioner. A StorageClass maps to a key by its provisioner,
refined by its parameters for drivers that serve several kinds of volume (`provisioner_key`: NFS
flavours, EBS/GKE disk types, Trident backends, ...); "UNKNOWN" marks parameters we cannot place.
Pure data and one pure function; read by the StorageProfile controller.

Clone strategies follow upstream's current table. Where the seeds' documentation table (written for an
older release) differs — it lists `csi-powerstore.dellemc.com` as CSI clone — upstream's newer choice
(host-assisted copy) wins, as a cluster running upstream today would show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

LOCAL_CSI_DRIVER = "local.csi.pycdi.io"  # the embedded node's CSI driver (`cdi.embedded.volumes.keys`)
LOCAL_PROVISIONER = "pycdi.local/hostpath"  # what earlier versions named it; stored classes keep it
UNKNOWN_KEY = "UNKNOWN"

RWO, ROX, RWX = "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"
FS, BLOCK = "Filesystem", "Block"
ClaimSets = tuple[tuple[str, str], ...]

# Named sets, as upstream groups them.
_RBD: ClaimSets = ((RWX, BLOCK), (RWO, BLOCK), (RWO, FS))
_ALL_BUT_RWX_FS: ClaimSets = ((RWX, BLOCK), (RWO, BLOCK), (RWO, FS), (ROX, BLOCK), (ROX, FS))
_ALL_FS: ClaimSets = ((RWX, FS), (RWO, FS), (ROX, FS))
_DELL_POWER: ClaimSets = ((RWX, BLOCK), (RWO, BLOCK), (RWO, FS), (ROX, BLOCK))  # PowerMax, PowerStore
_RWO_BOTH: ClaimSets = ((RWO, BLOCK), (RWO, FS))
_RWX_RWO_FS: ClaimSets = ((RWX, FS), (RWO, FS))
_RWX_BLOCK_RWO: ClaimSets = ((RWX, BLOCK), (RWO, BLOCK), (RWO, FS))


@dataclass(frozen=True)
class Capabilities:
    claim_property_sets: ClaimSets  # (access mode, volume mode), in preference order
    clone_strategy: str | None = None
    data_import_cron_source_format: str | None = None
    minimum_pvc_size: str | None = None


def _caps(sets: ClaimSets, clone: str | None = None, dic_format: str | None = None,
          minimum: str | None = None) -> Capabilities:
    return Capabilities(sets, clone, dic_format, minimum)


CSI, SNAP, COPY = "csi-clone", "snapshot", "copy"

CAPABILITIES: dict[str, Capabilities] = {
    # The embedded local provisioner: one-node loop-device volumes whose snapshots are reflink copies.
    LOCAL_CSI_DRIVER: _caps(((RWO, FS), (RWO, BLOCK)), SNAP, "pvc"),
    LOCAL_PROVISIONER: _caps(((RWO, FS), (RWO, BLOCK)), SNAP, "pvc"),
    # hostpath provisioners
    "kubevirt.io.hostpath-provisioner": _caps(((RWO, FS),)),
    "kubevirt.io/hostpath-provisioner": _caps(((RWO, FS),)),
    "k8s.io/minikube-hostpath": _caps(((RWO, FS),)),
    # NFS
    "nfs.csi.k8s.io": _caps(((RWX, FS),)),
    "k8s-sigs.io/nfs-subdir-external-provisioner": _caps(((RWX, FS),)),
    # Ceph RBD and CephFS
    "kubernetes.io/rbd": _caps(_RBD),
    "rbd.csi.ceph.com": _caps(_RBD, CSI),
    "rook-ceph.rbd.csi.ceph.com": _caps(_RBD, CSI, SNAP),
    "openshift-storage.rbd.csi.ceph.com": _caps(_RBD, CSI, SNAP),
    "cephfs.csi.ceph.com": _caps(_RWX_RWO_FS, CSI),
    "rook-ceph.cephfs.csi.ceph.com": _caps(_RWX_RWO_FS, CSI),
    "openshift-storage.cephfs.csi.ceph.com": _caps(_RWX_RWO_FS, CSI),
    # LINSTOR
    "linstor.csi.linbit.com": _caps(_ALL_BUT_RWX_FS),
    # Dell: Unity XT, PowerFlex, PowerScale, PowerMax, PowerStore
    "csi-unity.dellemc.com": _caps(_ALL_BUT_RWX_FS),
    "csi-unity.dellemc.com/nfs": _caps(_ALL_FS),
    "csi-vxflexos.dellemc.com": _caps(_ALL_BUT_RWX_FS, CSI),
    "csi-vxflexos.dellemc.com/nfs": _caps(_ALL_FS),
    "csi-isilon.dellemc.com": _caps(_ALL_FS, CSI),
    "csi-powermax.dellemc.com": _caps(_DELL_POWER, CSI),
    "csi-powermax.dellemc.com/nfs": _caps(_ALL_FS),
    "csi-powerstore.dellemc.com": _caps(_DELL_POWER, COPY),
    "csi-powerstore.dellemc.com/nfs": _caps(_ALL_FS),
    # StorageOS
    "kubernetes.io/storageos": _caps(((RWO, FS),)),
    "storageos": _caps(((RWO, FS),)),
    # AWS EBS and EFS
    "kubernetes.io/aws-ebs": _caps(((RWO, BLOCK),)),
    "ebs.csi.aws.com": _caps(((RWO, BLOCK),)),
    "ebs.csi.aws.com/io1": _caps(((RWO, BLOCK),), minimum="4Gi"),
    "ebs.csi.aws.com/io2": _caps(_RWX_BLOCK_RWO, minimum="4Gi"),
    "ebs.csi.aws.com/gp": _caps(((RWO, BLOCK),), minimum="1Gi"),
    "efs.csi.aws.com": _caps(_RWX_RWO_FS),
    # Azure disk and file
    "kubernetes.io/azure-disk": _caps(((RWO, BLOCK),)),
    "disk.csi.azure.com": _caps(((RWO, BLOCK),)),
    "kubernetes.io/azure-file": _caps(((RWX, FS),)),
    "file.csi.azure.com": _caps(((RWX, FS),)),
    # Google persistent disk
    "kubernetes.io/gce-pd": _caps(((RWO, BLOCK),)),
    "pd.csi.storage.gke.io": _caps(((RWO, BLOCK),), SNAP, SNAP),
    "pd.csi.storage.gke.io/hyperdisk": _caps(_RWX_BLOCK_RWO, SNAP, SNAP, "4Gi"),
    # Hitachi, HPE, IBM
    "hspc.csi.hitachi.com": _caps(_RWX_BLOCK_RWO, CSI, minimum="1Gi"),
    "csi.hpe.com": _caps(_RWX_BLOCK_RWO, CSI),
    "spectrumscale.csi.ibm.com": _caps(_RWX_RWO_FS, CSI),
    "block.csi.ibm.com": _caps(_RWX_BLOCK_RWO, CSI),
    "vpc.block.csi.ibm.io": _caps(_RWO_BOTH, COPY),
    # Portworx
    "kubernetes.io/portworx-volume/nfs": _caps(_RWX_RWO_FS),
    "kubernetes.io/portworx-volume": _caps(((RWX, BLOCK), (RWX, FS), (RWO, BLOCK), (RWO, FS))),
    "pxd.portworx.com/nfs": _caps(_RWX_RWO_FS, CSI),
    "pxd.portworx.com": _caps(((RWX, BLOCK), (RWX, FS), (RWO, BLOCK), (RWO, FS)), CSI),
    "pxd.portworx.com/pure_block": _caps(_RWX_BLOCK_RWO),
    "pxd.portworx.com/pure_fa_file": _caps(_RWX_RWO_FS),
    # NetApp Trident
    "csi.trident.netapp.io/ontap-nas": _caps(_RWX_RWO_FS, SNAP, SNAP),
    "csi.trident.netapp.io/ontap-san": _caps(((RWX, BLOCK),), SNAP, SNAP),
    "csi.trident.netapp.io/gcnv-flex": _caps(_RWX_RWO_FS, SNAP, SNAP, "1Gi"),
    # TopoLVM
    "topolvm.cybozu.com": _caps(_RWO_BOTH, COPY),
    "topolvm.io": _caps(_RWO_BOTH, COPY),
    # OpenStack, oVirt
    "cinder.csi.openstack.org": _caps(_RWO_BOTH),
    "manila.csi.openstack.org": _caps(((RWX, FS),)),
    "csi.ovirt.org": _caps(_RWO_BOTH),
    # Infinidat
    "infinibox-csi-driver/iscsiorfibrechannel": _caps(_RWX_BLOCK_RWO, CSI),
    "infinibox-csi-driver/nvme": _caps(_RWX_BLOCK_RWO, CSI),
    "infinibox-csi-driver/nfs": _caps(_RWX_RWO_FS, CSI),
    # vSphere
    "csi.vsphere.vmware.com": _caps(_RWO_BOTH),
    "csi.vsphere.vmware.com/nfs": _caps(((RWX, FS), (RWO, BLOCK), (RWO, FS))),
    # Huawei
    "csi.huawei.com": _caps(_ALL_BUT_RWX_FS),
    "csi.huawei.com/nfs": _caps(_ALL_FS),
    # KubeSAN
    "kubesan.gitlab.io": _caps(((RWX, BLOCK), (ROX, BLOCK), (RWO, BLOCK), (RWO, FS)), CSI),
    # Longhorn
    "driver.longhorn.io": _caps(((RWO, BLOCK),)),
    "driver.longhorn.io/migratable": _caps(((RWX, BLOCK), (RWO, BLOCK))),
    "driver.longhorn.io/nfs": _caps(_RWX_RWO_FS),
    "driver.longhorn.io/fs": _caps(((RWO, FS),)),
    # Oracle cloud
    "blockvolume.csi.oraclecloud.com": _caps(_RWX_BLOCK_RWO, CSI),
    # Synology
    "csi.san.synology.com/iscsi": _caps(_RWX_BLOCK_RWO, CSI, minimum="1Gi"),
    "csi.san.synology.com/nfs": _caps(_RWX_RWO_FS, CSI, minimum="1Gi"),
    "csi.san.synology.com/smb": _caps(_RWX_RWO_FS, CSI, minimum="1Gi"),
}

# Provisioners that make no volumes CDI can fill; their profiles are complete with no property sets.
UNSUPPORTED_PROVISIONERS = frozenset({
    "openshift-storage.noobaa.io/obc", "openshift-storage.ceph.rook.io/bucket", "rook-ceph.ceph.rook.io/bucket",
    "stork-snapshot", "kubernetes.io/no-provisioner",
})


def _fs_type(parameters: Mapping[str, str]) -> str:
    return parameters.get("csi.storage.k8s.io/fstype", "").lower()


def _nfs_by_fs_type(base: str) -> Callable[[Mapping[str, str]], str]:
    return lambda parameters: f"{base}/nfs" if _fs_type(parameters) == "nfs" else base


def _portworx(base: str, backends: bool) -> Callable[[Mapping[str, str]], str]:
    def key(parameters: Mapping[str, str]) -> str:
        if backends and parameters.get("backend") in ("pure_block", "pure_fa_file"):
            return f"{base}/{parameters['backend']}"
        if backends and "backend" in parameters:
            return base
        options = parameters.get("sharedv4_mount_options", "").split(",")
        return f"{base}/nfs" if "vers=3.0" in options and "nolock" in options else base
    return key


def _trident(parameters: Mapping[str, str]) -> str:
    backend = parameters.get("backendType", "")
    for flavour in ("ontap-nas", "ontap-san"):
        if backend.startswith(flavour):
            return f"csi.trident.netapp.io/{flavour}"
    selector = [part.strip() for part in parameters.get("selector", "").replace(";", ",").split(",")]
    if backend == "google-cloud-netapp-volumes" and "performance=flex" in selector:
        return "csi.trident.netapp.io/gcnv-flex"
    return UNKNOWN_KEY


def _by_choice(base: str, parameter: str, choices: Mapping[str, str], default: str | None) -> \
        Callable[[Mapping[str, str]], str]:
    def key(parameters: Mapping[str, str]) -> str:
        found = choices.get(parameters.get(parameter, ""))
        if found is not None:
            return f"{base}/{found}" if found else base
        return default if default is not None else UNKNOWN_KEY
    return key


def _longhorn(parameters: Mapping[str, str]) -> str:
    if parameters.get("migratable") == "true":
        return "driver.longhorn.io/migratable"
    if parameters.get("nfsOptions"):
        return "driver.longhorn.io/nfs"
    return "driver.longhorn.io/fs" if parameters.get("fsType") else "driver.longhorn.io"


_KEY_MAPPERS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "kubernetes.io/portworx-volume": _portworx("kubernetes.io/portworx-volume", backends=False),
    "pxd.portworx.com": _portworx("pxd.portworx.com", backends=True),
    "csi.trident.netapp.io": _trident,
    "infinibox-csi-driver": _by_choice("infinibox-csi-driver", "storage_protocol",
                                       {"iscsi": "iscsiorfibrechannel", "fc": "iscsiorfibrechannel", "nvme": "nvme",
                                        "nfs": "nfs", "nfs_treeq": "nfs"}, None),
    "csi.vsphere.vmware.com": lambda p: "csi.vsphere.vmware.com/nfs" if "nfs" in _fs_type(p)
    else "csi.vsphere.vmware.com",
    "csi-unity.dellemc.com": lambda p: "csi-unity.dellemc.com/nfs" if p.get("protocol", "").lower() == "nfs"
    else "csi-unity.dellemc.com",
    "csi-powerstore.dellemc.com": _nfs_by_fs_type("csi-powerstore.dellemc.com"),
    "csi-vxflexos.dellemc.com": _nfs_by_fs_type("csi-vxflexos.dellemc.com"),
    "csi-powermax.dellemc.com": _nfs_by_fs_type("csi-powermax.dellemc.com"),
    "csi.huawei.com": lambda p: "csi.huawei.com/nfs" if p.get("protocol") == "nfs" else "csi.huawei.com",
    "driver.longhorn.io": _longhorn,
    "ebs.csi.aws.com": _by_choice("ebs.csi.aws.com", "type", {"io1": "io1", "io2": "io2", "gp2": "gp", "gp3": "gp"},
                                  "ebs.csi.aws.com"),
    "pd.csi.storage.gke.io": _by_choice("pd.csi.storage.gke.io", "type",
                                        {"hyperdisk-balanced": "hyperdisk",
                                         "hyperdisk-balanced-high-availability": "hyperdisk"},
                                        "pd.csi.storage.gke.io"),
    "csi.san.synology.com": _by_choice("csi.san.synology.com", "protocol",
                                       {"iscsi": "iscsi", "": "iscsi", "smb": "smb", "nfs": "nfs",
                                        "nfs_treeq": "nfs"}, None),
}


def provisioner_key(provisioner: str, parameters: Mapping[str, str]) -> str:
    """The capabilities-table key for a StorageClass: its provisioner, refined by its parameters."""
    mapper = _KEY_MAPPERS.get(provisioner)
    return mapper(parameters) if mapper is not None else provisioner


def capabilities_for(storage_class: Mapping[str, object]) -> Capabilities | None:
    """The table's entry for a StorageClass document, or None when its provisioner key is not known."""
    parameters = storage_class.get("parameters")
    params = {str(k): str(v) for k, v in parameters.items()} if isinstance(parameters, Mapping) else {}
    return CAPABILITIES.get(provisioner_key(str(storage_class.get("provisioner", "")), params))
