"""The clone source pod and its Secret, as upstream's clone controller builds them (`makeCloneSourcePodSpec`),
pure: every input is explicit in `SourcePodInputs`.

    pod       `<target uid>-source-pod` in the SOURCE namespace, container `cdi-clone-source` running
              `cdi-cloner`; the source PVC mounted read-only at /var/run/cdi/clone/source (Filesystem) or
              as the device /dev/cdi-block-volume (Block); metrics port 8443; OnFailure restarts; no
              owner reference (owners cannot cross namespaces: the target's finalizer cleans up instead),
              `storage.ownerRef=<tgtNs>/<tgt>` so its changes reach the target's reconcile
    labels    app, `cdi.kubevirt.io=cdi-clone-source`, `hostAssistedSourcePodCloneSource=<source uid>`
    placement the CDI resource's `spec.workload` (`placement`), and, appended to its affinity as upstream
              does: required pod affinity to other source pods of a ReadWriteOnce source (they must
              share its node), preferred (weight 100) to the target's upload pod
    env       CLIENT_CERT / CLIENT_KEY from the Secret `<pod name>` (a client certificate whose CN is the
              clone's client name, signed by the upload-server CA), SERVER_CA_CERT (that CA),
              UPLOAD_URL (the upload pod's address: the embedded runtime has no Service DNS, and a pod IP
              works on both backends), CDI_CLONE_SERVER_NAME (the name its certificate carries),
              OWNER_UID, PREALLOCATION, VOLUME_MODE, MOUNT_POINT
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts import importer_env as env
from cdi.contracts import upload_protocol as up
from cdi.controllers.meta import name_of, namespace_of, uid_of
from cdi.controllers.placement import NO_PLACEMENT, Scheduling, merged
from cdi.controllers.upload.credentials import encode
from cdi.controllers.workerpodspec import WORKER_UID, is_block
from cdi.pki import KeyPair

CLONER_COMMAND = ("cdi-cloner",)
DATA_VOLUME = "cdi-data-vol"


@dataclass(frozen=True)
class SourcePodInputs:
    target: Object
    source: Object  # the source PVC
    pod_name: str
    ca_pem: str
    upload_ip: str
    owner_uid: str
    preallocation: bool
    image: str
    resources: dict[str, Any] | None = None
    placement: Scheduling = NO_PLACEMENT  # the CDI resource's spec.workload

    @property
    def server_name(self) -> str:
        return f"{up.upload_service_name(name_of(self.target))}.{namespace_of(self.target)}.svc"


def owner_ref(target: Object) -> str:
    return f"{namespace_of(target)}/{name_of(target)}"


def owner_uid_of(pod: Object) -> str:
    """The OWNER_UID a source pod was started with: the label of its metrics lines."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for var in container.get("env") or []:
            if var.get("name") == cp.OWNER_UID:
                return str(var.get("value") or "")
    return ""


def source_secret(inputs: SourcePodInputs, pair: KeyPair) -> Object:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": inputs.pod_name, "namespace": namespace_of(inputs.source),
                         "labels": {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_COMPONENT: ann.Component.CLONE_SOURCE},
                         "annotations": {ann.ANN_OWNER_REF: owner_ref(inputs.target)}},
            "data": encode({cp.SECRET_CERT_FIELD: pair.cert_pem, cp.SECRET_KEY_FIELD: pair.key_pem})}


def _env(inputs: SourcePodInputs) -> list[Object]:
    block = is_block(inputs.source)
    secret = [{"name": name, "valueFrom": {"secretKeyRef": {"name": inputs.pod_name, "key": key}}}
              for name, key in ((cp.CLIENT_KEY, cp.SECRET_KEY_FIELD), (cp.CLIENT_CERT, cp.SECRET_CERT_FIELD))]
    values = {
        cp.SERVER_CA_CERT: inputs.ca_pem,
        cp.UPLOAD_URL: f"https://{inputs.upload_ip}:{up.DEFAULT_LISTEN_PORT}/v1beta1/upload",
        cp.SERVER_NAME: inputs.server_name,
        cp.OWNER_UID: inputs.owner_uid,
        cp.PREALLOCATION: "true" if inputs.preallocation else "false",
        cp.VOLUME_MODE: "block" if block else "filesystem",
        cp.MOUNT_POINT: cp.SOURCE_DEVICE if block else cp.SOURCE_MOUNT,
    }
    return [*secret, *({"name": k, "value": v} for k, v in values.items())]


def source_pod(inputs: SourcePodInputs) -> Object:
    source = inputs.source
    container: Object = {
        "name": cp.CONTAINER_NAME, "image": inputs.image, "command": list(CLONER_COMMAND),
        "env": _env(inputs), "resources": inputs.resources or {},
        "ports": [{"name": "metrics", "containerPort": cp.METRICS_PORT, "protocol": "TCP"}],
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if is_block(source):
        container["volumeDevices"] = [{"name": DATA_VOLUME, "devicePath": cp.SOURCE_DEVICE}]
    else:
        container["volumeMounts"] = [{"name": DATA_VOLUME, "mountPath": cp.SOURCE_MOUNT, "readOnly": True}]
    labels = {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_COMPONENT: ann.Component.CLONE_SOURCE.value,
              ann.LABEL_HOST_ASSISTED_SOURCE_POD_CLONE_SOURCE: uid_of(source)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": inputs.pod_name, "namespace": namespace_of(source), "labels": labels,
                     "annotations": {ann.ANN_OWNER_REF: owner_ref(inputs.target), **ann.POD_ANNOTATION_DEFAULTS}},
        "spec": {"containers": [container], "restartPolicy": "OnFailure", "enableServiceLinks": False,
                 "automountServiceAccountToken": False,
                 **merged(inputs.placement, Scheduling(affinity=_affinity(inputs))),
                 "volumes": [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": name_of(source),
                                                                             "readOnly": True}}],
                 "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID, "fsGroup": WORKER_UID}},
    }


def _affinity(inputs: SourcePodInputs) -> Object:
    host = "kubernetes.io/hostname"
    upload = {"weight": 100, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {ann.LABEL_SERVICE: up.upload_service_name(name_of(inputs.target))}},
        "namespaces": [namespace_of(inputs.target)], "topologyKey": host}}
    affinity: Object = {"preferredDuringSchedulingIgnoredDuringExecution": [upload]}
    if "ReadWriteOnce" in ((inputs.source.get("spec") or {}).get("accessModes") or []):
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = [{
            "labelSelector": {"matchLabels": {ann.LABEL_HOST_ASSISTED_SOURCE_POD_CLONE_SOURCE: uid_of(inputs.source)}},
            "namespaces": [namespace_of(inputs.source)], "topologyKey": host}]
    return {"podAffinity": affinity}


def upload_url_host(pod: Object) -> str | None:
    """The address the pod was told to send to (to notice an upload pod that was replaced)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for var in container.get("env") or []:
            if var.get("name") == cp.UPLOAD_URL and isinstance(var.get("value"), str):
                return str(var["value"]).split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return None
