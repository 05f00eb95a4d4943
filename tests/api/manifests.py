"""Valid manifests the API tests share, so they run without the docs seed.

`FROM_SEED` holds examples copied from the OpenShift Virtualization docs (the seed beside the
repository), re-indented and with placeholders substituted exactly as `tests/api/seed_manifests.py`
does (`<source_namespace>` -> `source-namespace`, `<image_url>` -> a registry URL, overhead values from
the docs' callouts); `test_seed_examples.py` checks that reading the seed gives exactly these.
`HAND_WRITTEN` covers kinds and sources the docs never show (DataSource, CDI, populators, imageio,
vddk...), written from upstream's API.
"""

from __future__ import annotations

from typing import Any

import yaml

FROM_SEED_YAML = {
    # 6.2.2.4: the DataVolume template of "Creating a VM from a container disk by using the command line".
    "registry-template": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  creationTimestamp: null
  name: fedora-dv
spec:
  storage:
    resources:
      requests:
        storage: 10Gi
    storageClassName: storage-class
  source:
    registry:
      url: "docker://kubevirt/fedora-cloud-container-disk-demo:latest"
      secretRef: data-source-secret
      certConfigMap: tls-certs
status: {}
""",
    # 6.2.6.3.1: cloning a PVC to a data volume (no size: it comes from the source).
    "pvc-clone": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: datavolume
spec:
  source:
    pvc:
      namespace: "source-namespace"
      name: "my-vm-disk"
  storage: {}
""",
    # 8.9.2: enabling preallocation for a data volume.
    "preallocated": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: preallocated-datavolume
spec:
  source:
    registry:
      url: docker://quay.io/containerdisks/fedora:latest
  storage:
    resources:
      requests:
        storage: 1Gi
  preallocation: true
""",
    # 8.2.1: a storage profile for a provisioner CDI does not recognise, after the admin filled it in.
    "profile-claim-properties": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: StorageProfile
metadata:
  name: unknown-provisioner-class
spec:
  claimPropertySets:
  - accessModes:
    - ReadWriteOnce
    volumeMode: Filesystem
status:
  provisioner: unknown-provisioner
  storageClass: unknown-provisioner-class
""",
    # 8.2.1.1: a default cloning strategy.
    "profile-clone-strategy": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: StorageProfile
metadata:
  name: provisioner-class
spec:
  claimPropertySets:
  - accessModes:
    - ReadWriteOnce
    volumeMode: Filesystem
  cloneStrategy: csi-clone
status:
  provisioner: provisioner
  storageClass: provisioner-class
""",
    # 8.3.2.2: a custom boot source (the HyperConverged dataImportCronTemplates entry, as a DataImportCron).
    "cron-centos7": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataImportCron
metadata:
  name: centos7-image-cron
  annotations:
    cdi.kubevirt.io/storage.bind.immediate.requested: "true"
  labels:
    instancetype.kubevirt.io/default-preference: centos.7
    instancetype.kubevirt.io/default-instancetype: u1.medium
spec:
  schedule: "0 */12 * * *"
  template:
    spec:
      source:
        registry:
          url: docker://quay.io/containerdisks/centos:7-2009
      storage:
        resources:
          requests:
            storage: 30Gi
  garbageCollect: Outdated
  managedDataSource: centos7
""",
    # 8.4.1: the filesystemOverhead stanza (shown on the HyperConverged CR; CDIConfig has the same shape).
    "config-overhead": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDIConfig
metadata:
  name: config
spec:
  filesystemOverhead:
    global: "0.07"
    storageClass:
      mystorageclass: "0.04"
""",
}

HAND_WRITTEN_YAML = {
    "datasource-pvc": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataSource
metadata:
  name: rhel9
  namespace: openshift-virtualization-os-images
spec:
  source:
    pvc:
      namespace: openshift-virtualization-os-images
      name: rhel9-6a3c4b2f1e0d
status:
  source:
    pvc:
      namespace: openshift-virtualization-os-images
      name: rhel9-6a3c4b2f1e0d
  conditions:
  - type: Ready
    status: "True"
    reason: Ready
    lastTransitionTime: "2024-05-01T10:00:00Z"
    lastHeartbeatTime: null
""",
    "datasource-snapshot": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataSource
metadata:
  name: fedora
  namespace: golden
spec:
  source:
    snapshot:
      namespace: golden
      name: fedora-40
""",
    "datasource-chain": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataSource
metadata:
  name: default-os
  namespace: golden
spec:
  source:
    dataSource:
      namespace: golden
      name: fedora
""",
    "dv-from-datasource": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: example-vm-volume
spec:
  sourceRef:
    kind: DataSource
    name: rhel9
    namespace: openshift-virtualization-os-images
  storage:
    resources: {}
""",
    "dv-http-pvc-with-status": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: cirros
  namespace: default
  annotations:
    cdi.kubevirt.io/storage.bind.immediate.requested: "true"
spec:
  source:
    http:
      url: https://download.cirros-cloud.net/0.6.2/cirros-0.6.2-x86_64-disk.img
      checksum: sha256:7d6355852aeb6dbcd191bcda7cd74f1536cfe5cbf8a10495a7283a8396e4b75b
      extraHeaders:
      - "X-Trace: 1"
  pvc:
    accessModes:
    - ReadWriteOnce
    volumeMode: Block
    resources:
      requests:
        storage: 1Gi
  contentType: kubevirt
  priorityClassName: low
status:
  claimName: cirros
  phase: ImportInProgress
  progress: 45.27%
  restartCount: 1
  conditions:
  - type: Ready
    status: "False"
    reason: TransferRunning
  - type: Bound
    status: "True"
    reason: Bound
    message: PVC cirros Bound
  - type: Running
    status: "True"
    reason: Pod is running
""",
    "dv-upload-archive": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: upload-archive
spec:
  source:
    upload: {}
  contentType: archive
  storage:
    accessModes: [ReadWriteMany, ReadWriteOnce]
    resources:
      requests:
        storage: 5Gi
""",
    "dv-blank": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: scratch-disk
spec:
  source:
    blank: {}
  storage:
    volumeMode: FromStorageProfile
    resources:
      requests:
        storage: 1Mi
""",
    "dv-imageio": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: ovirt-disk
spec:
  source:
    imageio:
      url: https://engine.example.com/ovirt-engine/api
      diskId: 7b4e4a2c-0e5e-4f44-9d59-0e3f1b2d9a1f
      secretRef: engine-credentials
      certConfigMap: engine-ca
  storage:
    resources:
      requests:
        storage: 20Gi
""",
    "dv-vddk-warm": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: vmware-disk
spec:
  source:
    vddk:
      url: https://vcenter.example.com
      uuid: 52260566-b032-36cb-55b1-79bf29e30490
      backingFile: "[datastore1] vm/vm.vmdk"
      thumbprint: "31:14:EB:9E:F1:78:68:10:A5:78:D1:A7:DF:BB:54:B7:1B:91:9F:30"
      secretRef: vcenter-credentials
      initImageURL: quay.io/example/vddk:8
  checkpoints:
  - previous: ""
    current: snapshot-1
  finalCheckpoint: false
  storage:
    resources:
      requests:
        storage: 20Gi
""",
    "cdi": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDI
metadata:
  name: cdi
spec:
  imagePullPolicy: IfNotPresent
  infra:
    nodeSelector:
      kubernetes.io/os: linux
    tolerations:
    - key: CriticalAddonsOnly
      operator: Exists
  workload:
    nodeSelector:
      kubernetes.io/os: linux
  config:
    featureGates:
    - HonorWaitForFirstConsumer
  customizeComponents:
    patches:
    - resourceName: cdi-deployment
      resourceType: Deployment
      patch: '{"spec":{"replicas":2}}'
      type: merge
status:
  phase: Deployed
  observedVersion: v1.66.0
""",
    "volume-import-source": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: VolumeImportSource
metadata:
  name: volume-import-source-1234
spec:
  source:
    registry:
      url: docker://quay.io/containerdisks/fedora:40
  contentType: kubevirt
  preallocation: false
""",
    "volume-upload-source": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: VolumeUploadSource
metadata:
  name: volume-upload-source-1234
spec:
  contentType: archive
""",
    "volume-clone-source": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: VolumeCloneSource
metadata:
  name: volume-clone-source-1234
spec:
  source:
    kind: PersistentVolumeClaim
    name: golden
""",
    "upload-token-request": """
apiVersion: upload.cdi.kubevirt.io/v1beta1
kind: UploadTokenRequest
metadata:
  name: token-for-dv
  namespace: default
spec:
  pvcName: upload-target
""",
}


def _load(table: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in table.items()}


FROM_SEED: dict[str, dict[str, Any]] = _load(FROM_SEED_YAML)
HAND_WRITTEN: dict[str, dict[str, Any]] = _load(HAND_WRITTEN_YAML)
ALL_VALID: dict[str, dict[str, Any]] = {**FROM_SEED, **HAND_WRITTEN}
