"""Every annotation, label and finalizer key CDI reads or writes, spelled once.

These keys are a contract between processes: the DataVolume controllers write them on PVCs, the
import/upload/clone controllers and worker pods read them, users set some on DataVolumes, and other
tools (KubeVirt, HCO) rely on them. This is the only module allowed to spell a `cdi.kubevirt.io/...`
key (or one under our own `pycdi.io/` prefix); everything else imports the constant. Groups follow
upstream's layout: import source, worker and pod state, clone, DataVolume-level, DataImportCron,
pass-through pod annotations, labels, finalizers. Quirky upstream spellings (`cdi.Kubervirt.io`,
`cloneUniqeId`) are kept on purpose: they are on the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# --- Import source: set from the DataVolume (or VolumeImportSource) on the target PVC, read by the
# import controller to build the importer pod. A PVC with an endpoint or source is an import target.
ANN_SOURCE: Final = "cdi.kubevirt.io/storage.import.source"
ANN_ENDPOINT: Final = "cdi.kubevirt.io/storage.import.endpoint"
ANN_SECRET: Final = "cdi.kubevirt.io/storage.import.secretName"
ANN_CERT_CONFIG_MAP: Final = "cdi.kubevirt.io/storage.import.certConfigMap"
ANN_REGISTRY_IMPORT_METHOD: Final = "cdi.kubevirt.io/storage.import.registryImportMethod"
ANN_REGISTRY_IMAGE_STREAM: Final = "cdi.kubevirt.io/storage.import.registryImageStream"
ANN_REGISTRY_IMAGE_ARCHITECTURE: Final = "cdi.kubevirt.io/storage.import.registryImageArchitecture"
ANN_DISK_ID: Final = "cdi.kubevirt.io/storage.import.diskId"
ANN_UUID: Final = "cdi.kubevirt.io/storage.import.uuid"
ANN_BACKING_FILE: Final = "cdi.kubevirt.io/storage.import.backingFile"
ANN_THUMBPRINT: Final = "cdi.kubevirt.io/storage.import.vddk.thumbprint"
ANN_INSECURE_SKIP_VERIFY: Final = "cdi.kubevirt.io/storage.import.insecureSkipVerify"
ANN_EXTRA_HEADERS: Final = "cdi.kubevirt.io/storage.import.extraHeaders"  # + ".<index>"
ANN_SECRET_EXTRA_HEADERS: Final = "cdi.kubevirt.io/storage.import.secretExtraHeaders"  # + ".<index>"
ANN_CHECKSUM: Final = "cdi.kubevirt.io/storage.import.checksum"
ANN_VDDK_INIT_IMAGE_URL: Final = "cdi.kubevirt.io/storage.pod.vddk.initimageurl"
ANN_VDDK_EXTRA_ARGS: Final = "cdi.kubevirt.io/storage.pod.vddk.extraargs"
ANN_VDDK_VERSION: Final = "cdi.kubevirt.io/storage.pod.vddk.version"  # from the termination message
ANN_VDDK_HOST: Final = "cdi.kubevirt.io/storage.pod.vddk.host"  # from the termination message
ANN_CONTENT_TYPE: Final = "cdi.kubevirt.io/storage.contentType"
ANN_IMPORT_POD: Final = "cdi.kubevirt.io/storage.import.importPodName"
ANN_REQUIRES_SCRATCH: Final = "cdi.kubevirt.io/storage.import.requiresScratch"
ANN_REQUIRES_DIRECT_IO: Final = "cdi.kubevirt.io/storage.import.requiresDirectIo"
ANN_IMPORT_FATAL_ERROR: Final = "cdi.kubevirt.io/storage.import.fatalError"
# Multi-stage (warm) import bookkeeping.
ANN_PREVIOUS_CHECKPOINT: Final = "cdi.kubevirt.io/storage.checkpoint.previous"
ANN_CURRENT_CHECKPOINT: Final = "cdi.kubevirt.io/storage.checkpoint.current"
ANN_FINAL_CHECKPOINT: Final = "cdi.kubevirt.io/storage.checkpoint.final"
ANN_CHECKPOINTS_COPIED: Final = "cdi.kubevirt.io/storage.checkpoint.copied"  # + ".<checkpoint>"
ANN_CURRENT_POD_ID: Final = "cdi.kubevirt.io/storage.checkpoint.pod.id"
ANN_MULTI_STAGE_IMPORT_DONE: Final = "cdi.kubevirt.io/storage.checkpoint.done"


class ImportSourceValue(StrEnum):
    """Values of `ANN_SOURCE`; an absent or unknown value means http."""

    HTTP = "http"
    S3 = "s3"
    GCS = "gcs"
    GLANCE = "glance"
    NONE = "none"  # a blank image
    REGISTRY = "registry"
    IMAGEIO = "imageio"
    VDDK = "vddk"


def extra_header_key(index: int) -> str:
    """The annotation holding the index-th extra HTTP header."""
    return f"{ANN_EXTRA_HEADERS}.{index}"


def secret_extra_header_key(index: int) -> str:
    """The annotation naming the Secret of the index-th secret extra HTTP header."""
    return f"{ANN_SECRET_EXTRA_HEADERS}.{index}"


def checkpoint_copied_key(checkpoint: str) -> str:
    """The annotation recording that a checkpoint has been copied."""
    return f"{ANN_CHECKPOINTS_COPIED}.{checkpoint}"


# --- Worker and pod state, written on the target (or prime) PVC by the controllers that watch the
# worker pods, read back by the DataVolume controllers to compute phase, progress and conditions.
ANN_POD_PHASE: Final = "cdi.kubevirt.io/storage.pod.phase"
ANN_POD_READY: Final = "cdi.kubevirt.io/storage.pod.ready"
ANN_POD_RESTARTS: Final = "cdi.kubevirt.io/storage.pod.restarts"
# Ours: why the worker's last run ended before its restart ("Importer pod x was killed (exit code 137,
# SIGKILL)"), so the DataVolume can say it even when the restart came too fast to see the pod stopped.
ANN_POD_LAST_FAILURE: Final = "cdi.kubevirt.io/storage.pod.lastFailure"
ANN_POD_SCHEDULABLE: Final = "cdi.kubevirt.io/storage.pod.schedulable"
ANN_RUNNING_CONDITION: Final = "cdi.kubevirt.io/storage.condition.running"
ANN_RUNNING_CONDITION_MESSAGE: Final = "cdi.kubevirt.io/storage.condition.running.message"
ANN_RUNNING_CONDITION_REASON: Final = "cdi.kubevirt.io/storage.condition.running.reason"
ANN_SOURCE_RUNNING_CONDITION: Final = "cdi.kubevirt.io/storage.condition.source.running"
ANN_SOURCE_RUNNING_CONDITION_MESSAGE: Final = "cdi.kubevirt.io/storage.condition.source.running.message"
ANN_SOURCE_RUNNING_CONDITION_REASON: Final = "cdi.kubevirt.io/storage.condition.source.running.reason"
ANN_BOUND_CONDITION: Final = "cdi.kubevirt.io/storage.condition.bound"
ANN_BOUND_CONDITION_MESSAGE: Final = "cdi.kubevirt.io/storage.condition.bound.message"
ANN_BOUND_CONDITION_REASON: Final = "cdi.kubevirt.io/storage.condition.bound.reason"
ANN_POD_RETAIN_AFTER_COMPLETION: Final = "cdi.kubevirt.io/storage.pod.retainAfterCompletion"
ANN_PRIORITY_CLASS_NAME: Final = "cdi.kubevirt.io/storage.pod.priorityclassname"
ANN_POD_SERVICE_ACCOUNT_NAME: Final = "cdi.kubevirt.io/storage.pod.serviceAccountName"
ANN_PREALLOCATION_REQUESTED: Final = "cdi.kubevirt.io/storage.preallocation.requested"
ANN_PREALLOCATION_APPLIED: Final = "cdi.kubevirt.io/storage.preallocation"
ANN_POPULATOR_PROGRESS: Final = "cdi.kubevirt.io/storage.populator.progress"
ANN_POPULATOR_KIND: Final = "cdi.kubevirt.io/storage.populator.kind"
ANN_PVC_PRIME_NAME: Final = "cdi.kubevirt.io/storage.populator.pvcPrime"
ANN_USE_POPULATOR: Final = "cdi.kubevirt.io/storage.usePopulator"
ANN_IMMEDIATE_BINDING: Final = "cdi.kubevirt.io/storage.bind.immediate.requested"
ANN_SELECTED_NODE: Final = "volume.kubernetes.io/selected-node"  # Kubernetes' own; copied to PVC'
ANN_CREATED_BY: Final = "cdi.kubevirt.io/storage.createdByController"  # value "yes"
ANN_CREATED_BY_UPLOAD: Final = "cdi.kubevirt.io/storage.createdByUploadController"  # value "yes"
ANN_UPLOAD_REQUEST: Final = "cdi.kubevirt.io/storage.upload.target"  # present (any value): upload target
ANN_UPLOAD_POD: Final = "cdi.kubevirt.io/storage.uploadPodName"
ANN_UPLOAD_CLIENT_NAME: Final = "cdi.kubevirt.io/uploadClientName"

# --- Clone.
ANN_CLONE_REQUEST: Final = "k8s.io/CloneRequest"  # "<namespace>/<name>" of the source PVC
ANN_CLONE_OF: Final = "k8s.io/CloneOf"
ANN_CLONE_SOURCE_POD: Final = "cdi.kubevirt.io/storage.sourceClonePodName"
ANN_CLONE_TOKEN: Final = "cdi.kubevirt.io/storage.clone.token"
ANN_EXTENDED_CLONE_TOKEN: Final = "cdi.kubevirt.io/storage.extended.clone.token"
ANN_CLONE_TYPE: Final = "cdi.kubevirt.io/cloneType"  # a CloneStrategy value
ANN_CLONE_FALLBACK_REASON: Final = "cdi.kubevirt.io/cloneFallbackReason"
ANN_CLONE_PHASE: Final = "cdi.kubevirt.io/clonePhase"
ANN_CLONE_ERROR: Final = "cdi.kubevirt.io/cloneError"
ANN_DATA_SOURCE_NAMESPACE: Final = "cdi.kubevirt.io/dataSourceNamespace"
ANN_PERMISSIVE_CLONE: Final = "cdi.kubevirt.io/permissiveClone"
ANN_OWNER_UID: Final = "cdi.kubevirt.io/ownerUID"
ANN_OWNED_BY_DATA_VOLUME: Final = "cdi.kubevirt.io/ownedByDataVolume"  # "<namespace>/<name>"
ANN_OWNER_REF: Final = "cdi.kubevirt.io/storage.ownerRef"  # "<namespace>/<name>" of the target PVC
ANN_VIRTUAL_SIZE: Final = "cdi.Kubervirt.io/virtualSize"  # sic: upstream's typo is on the wire
ANN_SOURCE_CAPACITY: Final = "cdi.Kubervirt.io/sourceCapacity"  # sic
ANN_EVENT_SOURCE_KIND: Final = "cdi.kubevirt.io/events.source.kind"
ANN_EVENT_SOURCE: Final = "cdi.kubevirt.io/events.source"
ANN_CSI_CLONE_REQUEST: Final = "cdi.kubevirt.io/CSICloneRequest"  # legacy
ANN_SMART_CLONE_REQUEST: Final = "k8s.io/SmartCloneRequest"  # legacy
ANN_SMART_CLONE_SNAPSHOT: Final = "cdi.kubevirt.io/smartCloneSnapshot"  # legacy
ANN_CLONE_STRATEGY: Final = "cdi.kubevirt.io/clone-strategy"  # on a StorageClass
# Ours: the VolumeSnapshotClass the clone populator chose with the strategy, so a restart reuses it.
ANN_CLONE_SNAPSHOT_CLASS: Final = "cdi.kubevirt.io/cloneSnapshotClass"


class ClonePhase(StrEnum):
    """Values of `ANN_CLONE_PHASE`, written by the clone populator."""

    PENDING = "Pending"
    SUCCEEDED = "Succeeded"
    ERROR = "Error"
    CSI_CLONE = "CSIClone"
    HOST_CLONE = "HostClone"
    PREP_CLAIM = "PrepClaim"
    REBIND = "Rebind"
    SNAPSHOT_CLONE = "SnapshotClone"
    SNAPSHOT = "Snapshot"


# --- DataVolume-level and claim adoption.
ANN_PRE_POPULATED: Final = "cdi.kubevirt.io/storage.prePopulated"
ANN_POPULATED_FOR: Final = "cdi.kubevirt.io/storage.populatedFor"
ANN_CHECK_STATIC_VOLUME: Final = "cdi.kubevirt.io/storage.checkStaticVolume"
ANN_PERSISTENT_VOLUME_LIST: Final = "cdi.kubevirt.io/storage.persistentVolumeList"
ANN_ALLOW_CLAIM_ADOPTION: Final = "cdi.kubevirt.io/allowClaimAdoption"
ANN_CREATED_FOR_DATA_VOLUME: Final = "cdi.kubevirt.io/createdForDataVolume"
ANN_EXTERNAL_POPULATION: Final = "cdi.kubevirt.io/externalPopulation"
ANN_CONFIG_AUTHORITY: Final = "cdi.kubevirt.io/configAuthority"  # on the CDI CR

# --- Ours, beyond upstream (under our own prefix, not `cdi.kubevirt.io`): transfer progress a user can act
# on. The DataVolume CRD is upstream's exact schema and a real API server prunes unknown status fields, so
# the DataVolume controllers publish bytes, rate and ETA as annotations on the DataVolume
# (`cdi.controllers.progresswatch` computes them; `cdi get dv -o wide` renders them). Values are plain
# integers: bytes, bytes per second, seconds. `ANN_STALL_TIMEOUT` is set by users on a DataVolume (a Go
# duration, "15m") to override the controller's `--stall-timeout` for that transfer.
OUR_PREFIX: Final = "pycdi.io/"
ANN_TRANSFER_BYTES_DONE: Final = f"{OUR_PREFIX}transfer.bytesDone"
ANN_TRANSFER_BYTES_TOTAL: Final = f"{OUR_PREFIX}transfer.bytesTotal"
ANN_TRANSFER_RATE: Final = f"{OUR_PREFIX}transfer.bytesPerSecond"
ANN_TRANSFER_ETA: Final = f"{OUR_PREFIX}transfer.etaSeconds"
TRANSFER_ANNOTATIONS: Final = (ANN_TRANSFER_BYTES_DONE, ANN_TRANSFER_BYTES_TOTAL, ANN_TRANSFER_RATE, ANN_TRANSFER_ETA)
ANN_STALL_TIMEOUT: Final = f"{OUR_PREFIX}stallTimeout"

# --- DataImportCron: on the cron, on its DVs/PVCs/snapshots, and on StorageProfiles.
ANN_SOURCE_DESIRED_DIGEST: Final = "cdi.kubevirt.io/storage.import.sourceDesiredDigest"
ANN_IMAGE_STREAM_DOCKER_REF: Final = "cdi.kubevirt.io/storage.import.imageStreamDockerRef"
ANN_NEXT_CRON_TIME: Final = "cdi.kubevirt.io/storage.import.nextCronTime"
ANN_LAST_CRON_TIME: Final = "cdi.kubevirt.io/storage.import.lastCronTime"
ANN_STORAGE_CLASS: Final = "cdi.kubevirt.io/storage.import.storageClass"
ANN_LAST_USE_TIME: Final = "cdi.kubevirt.io/storage.import.lastUseTime"
ANN_SOURCE_VOLUME_MODE: Final = "cdi.kubevirt.io/storage.import.sourceVolumeMode"
ANN_ADVISED_RESTORE_SIZE: Final = "cdi.kubevirt.io/storage.import.advisedRestoreSize"
ANN_MIN_SUPPORTED_PVC_SIZE: Final = "cdi.kubevirt.io/minimumSupportedPvcSize"
ANN_USE_RWO_FOR_DATA_IMPORT_CRON: Final = "cdi.kubevirt.io/useReadWriteOnceForDataImportCron"
ANN_SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON: Final = "cdi.kubevirt.io/snapshotClassForDataImportCron"

# --- StorageClass defaults CDI honours (Kubernetes' and KubeVirt's keys).
ANN_DEFAULT_STORAGE_CLASS: Final = "storageclass.kubernetes.io/is-default-class"
ANN_DEFAULT_VIRT_STORAGE_CLASS: Final = "storageclass.kubevirt.io/is-default-virt-class"

# --- Annotations copied from the DataVolume/PVC to worker pods, and their defaults when absent.
ANN_POD_NETWORK: Final = "k8s.v1.cni.cncf.io/networks"
ANN_POD_MULTUS_DEFAULT_NETWORK: Final = "v1.multus-cni.io/default-network"
ANN_POD_SIDECAR_INJECTION: Final = "sidecar.istio.io/inject"
ANN_POD_LINKERD_INJECTION: Final = "linkerd.io/inject"
ANN_OPEN_DEFAULT_PORTS: Final = "k8s.ovn.org/open-default-ports"  # upload pods only
UPLOAD_POD_OPEN_PORTS: Final = '[{"protocol":"tcp","port":8443}]'
POD_PASSTHROUGH_ANNOTATIONS: Final = (
    ANN_POD_NETWORK,
    ANN_POD_MULTUS_DEFAULT_NETWORK,
    ANN_POD_SIDECAR_INJECTION,
    ANN_POD_LINKERD_INJECTION,
)
POD_ANNOTATION_DEFAULTS: Final = {ANN_POD_SIDECAR_INJECTION: "false", ANN_POD_LINKERD_INJECTION: "disabled"}

# --- Labels.
LABEL_APP: Final = "app"
APP_NAME: Final = "containerized-data-importer"  # value of LABEL_APP on every CDI object
LABEL_COMPONENT: Final = "cdi.kubevirt.io"  # value: a Component
LABEL_PROMETHEUS: Final = "prometheus.cdi.kubevirt.io"  # "true" on pods exposing metrics
LABEL_SUPPRESS_FILLING_UP_ALERT: Final = "alerts.k8s.io/KubePersistentVolumeFillingUp"  # "disabled"
LABEL_EXCLUDE_FROM_VELERO_BACKUP: Final = "velero.io/exclude-from-backup"  # "true"
LABEL_OWNED_BY_UID: Final = "cdi.kubevirt.io/OwnedByUID"
LABEL_DATA_IMPORT_CRON: Final = "cdi.kubevirt.io/dataImportCron"
LABEL_DATA_IMPORT_CRON_CLEANUP: Final = "cdi.kubevirt.io/dataImportCron.cleanup"
LABEL_DATA_IMPORT_CRON_NAMESPACE: Final = "cdi.kubevirt.io/dataImportCronNs"
LABEL_DATA_IMPORT_CRON_POLLER: Final = "cdi.kubevirt.io/dataImportCronPoller"
LABEL_APPLY_STORAGE_PROFILE: Final = "cdi.kubevirt.io/applyStorageProfile"
LABEL_UPLOAD_TARGET: Final = "cdi.kubevirt.io/uploadTarget"
LABEL_SERVICE: Final = "service"  # upload pod selector
LABEL_CLONE_UNIQUE_ID: Final = "cdi.kubevirt.io/storage.clone.cloneUniqeId"  # sic
LABEL_HOST_ASSISTED_SOURCE_POD_CLONE_SOURCE: Final = "cdi.kubevirt.io/hostAssistedSourcePodCloneSource"
# KubeVirt's default instance type and preference of a disk; a registry image declares them in its
# environment (INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora), the importer reports them as labels,
# and they are copied onto the PVC and its DataVolume (upstream: updateDataVolumeDefaultInstancetypeLabels).
LABEL_DEFAULT_INSTANCETYPE: Final = "instancetype.kubevirt.io/default-instancetype"
LABEL_DEFAULT_INSTANCETYPE_KIND: Final = "instancetype.kubevirt.io/default-instancetype-kind"
LABEL_DEFAULT_PREFERENCE: Final = "instancetype.kubevirt.io/default-preference"
LABEL_DEFAULT_PREFERENCE_KIND: Final = "instancetype.kubevirt.io/default-preference-kind"
DEFAULT_INSTANCETYPE_LABELS: Final = (LABEL_DEFAULT_INSTANCETYPE, LABEL_DEFAULT_INSTANCETYPE_KIND,
                                      LABEL_DEFAULT_PREFERENCE, LABEL_DEFAULT_PREFERENCE_KIND)
LABEL_DYNAMIC_CREDENTIALS_SUPPORT: Final = "kubevirt.io/dynamic-credentials-support"
# Labels matching this are copied from a source (DataImportCron, PVC) to the DataVolume/DataSource.
COPIED_LABEL_PATTERN: Final = r"^([\w.]+\.kubevirt.io|kubevirt.io)/[\w.-]+$"


class Component(StrEnum):
    """Values of `LABEL_COMPONENT` on the objects CDI creates."""

    IMPORTER = "importer"
    UPLOAD_SERVER = "cdi-upload-server"
    CLONE_SOURCE = "cdi-clone-source"
    POPULATOR_PREP = "cdi-populator-prep"
    SMART_CLONE = "cdi-smart-clone"
    CLONE_FROM_SNAPSHOT_FALLBACK_PVC = "cdi-clone-from-snapshot-source-host-assisted-fallback-pvc"


# --- Finalizers.
FINALIZER_IMPORT_IMAGE_STREAM: Final = "cdi.kubevirt.io/importImageStream"  # node-pull image stream PVC
FINALIZER_CLONE_SOURCE: Final = "cdi.kubevirt.io/cloneSource"  # host-assisted clone target PVC
FINALIZER_CLONE_POPULATOR: Final = "cdi.kubevirt.io/clonePopulator"  # clone populator target PVC
FINALIZER_DATA_VOLUME: Final = "cdi.kubevirt.io/dataVolumeFinalizer"  # cross-namespace clone DV
FINALIZER_OBJECT_TRANSFER: Final = "cdi.kubevirt.io/objectTransfer"
FINALIZER_OPERATOR: Final = "operator.cdi.kubevirt.io"  # on the CDI CR
