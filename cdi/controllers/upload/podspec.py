"""The upload server pod and its Service for a PVC, as upstream's makeUploadPodSpec and
makeUploadServiceSpec build them. Pure: every input is explicit in `UploadPodInputs`.

Pod contract (the env names are `cdi.contracts.upload_protocol`'s, read by `importer.uploadserver`):

    container `cdi-upload-server`, command `cdi-uploadserver`, port 8443 (`uploadserver`)
    LISTEN_ADDRESS   the pod's IP (downward API `status.podIP`: each embedded pod has its own loopback
                     address, so servers must not all bind 0.0.0.0:8443)
    LISTEN_PORT      8443
    DESTINATION      /data/disk.img (Filesystem) or /dev/cdi-block-volume (Block)
    TLS_CERT_FILE / TLS_KEY_FILE / CLIENT_CERT_FILE   /etc/tls/{tls.crt,tls.key,ca.crt}, from the
                     Secret `tls_secret` (the server pair, and the CA that signs the proxy's client cert)
    CLIENT_NAME      the client certificate CN to accept (the proxy's, or a clone source's)
    UPLOAD_IMAGE_SIZE, FILESYSTEM_OVERHEAD (0 for Block), PREALLOCATION   as for the importer
    DEADLINE         RFC 3339, when given: after it the server exits "Deadline Passed" (cert refresh)
    CDI_SCRATCH_PATH /scratch, only when a scratch claim is mounted there (no variable: no scratch)
    OWNER_UID        ours: the uid of the PVC's controller (its DataVolume), else the PVC's; the server labels
                     its `/metrics` byte counters with it, as the importer does, for the DataVolume controller
    mounts           the PVC at /data or /dev/cdi-block-volume, scratch at /scratch when given, the
                     TLS Secret read-only at /etc/tls
    readiness        HTTPS GET /healthz on 8443 (2 s initial delay, every 5 s); restartPolicy OnFailure

Labels as upstream: app=containerized-data-importer, cdi.kubevirt.io=cdi-upload-server,
service=<service name> (the Service's selector), cdi.kubevirt.io/uploadTarget=<PVC uid>.
The Service maps port 443 to the pod's 8443, which is where upstream's proxy connects. The pod is placed
by the CDI resource's `spec.workload` (`placement`), as upstream's makeUploadPodSpec does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts import importer_env as env
from cdi.contracts import upload_protocol as up
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, controller_reference, controller_uid, name_of, namespace_of, uid_of
from cdi.controllers.placement import NO_PLACEMENT, Scheduling
from cdi.controllers.workerpodspec import is_block, worker_pod

DEFAULT_IMAGE = "pycdi/pycdi:latest"
UPLOAD_SERVER_COMMAND = ("cdi-uploadserver",)
CONTAINER_NAME = "cdi-upload-server"
PORT_NAME = "uploadserver"
TLS_VOLUME = "tls-secret"


@dataclass(frozen=True)
class UploadPodInputs:
    pvc: Object
    pod_name: str  # upstream: `upload_resource_name(pvc name)`, or the PVC's uploadPodName annotation
    tls_secret: str  # holds tls.crt, tls.key and ca.crt
    config: ConfigView
    client_name: str = up.UPLOAD_CLIENT_NAME
    scratch_claim: str | None = None  # None for clone targets (upstream gives them no scratch)
    image: str = DEFAULT_IMAGE
    deadline: str | None = None
    service_name: str | None = None  # default: the pod name as a DNS label
    extra_env: dict[str, str] = field(default_factory=dict)
    placement: Scheduling = NO_PLACEMENT  # the CDI resource's spec.workload

    @property
    def service(self) -> str:
        return self.service_name or up.upload_service_name(name_of(self.pvc))


def upload_env(inputs: UploadPodInputs) -> list[dict[str, Any]]:
    pvc = inputs.pvc
    spec = pvc.get("spec") or {}
    block = is_block(pvc)
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "")
    values = {
        up.LISTEN_PORT: str(up.DEFAULT_LISTEN_PORT),
        up.DESTINATION: env.DEFAULT_BLOCK_PATH if block else up.DEFAULT_DESTINATION,
        up.TLS_KEY_FILE: up.DEFAULT_TLS_KEY,
        up.TLS_CERT_FILE: up.DEFAULT_TLS_CERT,
        up.CLIENT_CERT_FILE: up.DEFAULT_CLIENT_CA,
        up.CLIENT_NAME: inputs.client_name,
        up.UPLOAD_IMAGE_SIZE: str(request),
        env.FILESYSTEM_OVERHEAD: "0" if block else str(inputs.config.overhead(spec.get("storageClassName"))),
        env.PREALLOCATION: annotations_of(pvc).get(ann.ANN_PREALLOCATION_REQUESTED,
                                                   "true" if inputs.config.preallocation else "false"),
        env.OWNER_UID: controller_uid(pvc) or uid_of(pvc),
    }
    if inputs.deadline:
        values[up.DEADLINE] = inputs.deadline
    if inputs.scratch_claim:
        values[env.SCRATCH_PATH] = env.DEFAULT_SCRATCH_DIR
    values.update(inputs.extra_env)
    address = {"name": up.LISTEN_ADDRESS, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    return [address, *({"name": k, "value": v} for k, v in values.items())]


def _volumes(inputs: UploadPodInputs) -> tuple[list[Object], list[Object], list[Object]]:
    volumes: list[Object] = [
        {"name": "cdi-data-vol", "persistentVolumeClaim": {"claimName": name_of(inputs.pvc), "readOnly": False}},
        {"name": TLS_VOLUME, "secret": {"secretName": inputs.tls_secret}},
    ]
    mounts: list[Object] = [{"name": TLS_VOLUME, "mountPath": up.TLS_DIR, "readOnly": True}]
    devices: list[Object] = []
    if is_block(inputs.pvc):
        devices.append({"name": "cdi-data-vol", "devicePath": env.DEFAULT_BLOCK_PATH})
    else:
        mounts.insert(0, {"name": "cdi-data-vol", "mountPath": env.DEFAULT_DATA_DIR})
    if inputs.scratch_claim:
        volumes.append({"name": "cdi-scratch-vol", "persistentVolumeClaim": {"claimName": inputs.scratch_claim}})
        mounts.append({"name": "cdi-scratch-vol", "mountPath": env.DEFAULT_SCRATCH_DIR})
    return volumes, mounts, devices


def upload_labels(inputs: UploadPodInputs) -> dict[str, str]:
    return {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_COMPONENT: ann.Component.UPLOAD_SERVER,
            ann.LABEL_SERVICE: inputs.service, ann.LABEL_UPLOAD_TARGET: uid_of(inputs.pvc)}


def upload_pod(inputs: UploadPodInputs) -> Object:
    pvc = inputs.pvc
    volumes, mounts, devices = _volumes(inputs)
    container: Object = {
        "name": CONTAINER_NAME, "image": inputs.image, "command": list(UPLOAD_SERVER_COMMAND), "args": ["-v=1"],
        "ports": [{"name": PORT_NAME, "containerPort": up.DEFAULT_LISTEN_PORT, "protocol": "TCP"}],
        "env": upload_env(inputs), "resources": inputs.config.pod_resources, "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": up.HEALTHZ_PATH, "port": up.DEFAULT_LISTEN_PORT, "scheme": "HTTPS"},
                           "initialDelaySeconds": 2, "periodSeconds": 5},
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if devices:
        container["volumeDevices"] = devices
    annotations = {ann.ANN_CREATED_BY_UPLOAD: "yes", **ann.POD_ANNOTATION_DEFAULTS,
                   ann.ANN_OPEN_DEFAULT_PORTS: ann.UPLOAD_POD_OPEN_PORTS}
    return worker_pod(pvc, inputs.pod_name, upload_labels(inputs), container, volumes, annotations,
                      placement=inputs.placement)


def upload_service(pvc: Object, service_name: str | None = None) -> Object:
    """The Service the proxy reaches the upload pod through (selector `service: <name>`, 443 → 8443)."""
    name = service_name or up.upload_service_name(name_of(pvc))
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace_of(pvc),
                     "labels": {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_COMPONENT: ann.Component.UPLOAD_SERVER},
                     "annotations": {ann.ANN_CREATED_BY_UPLOAD: "yes"},
                     "ownerReferences": [controller_reference(pvc)]},
        "spec": {"ports": [{"name": PORT_NAME, "protocol": "TCP", "port": up.SERVICE_PORT,
                            "targetPort": up.DEFAULT_LISTEN_PORT}],
                 "selector": {ann.LABEL_SERVICE: name}},
    }
