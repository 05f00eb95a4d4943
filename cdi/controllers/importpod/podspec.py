"""The importer pod for a PVC, as upstream's makeImporterPodSpec builds it: one `importer` container
running `cdi-importer` with the env-var contract, the target volume at /data (Filesystem) or
/dev/cdi-block-volume (Block), scratch at /scratch when asked for (and then, only then,
CDI_SCRATCH_PATH=/scratch: the importer uses no scratch space it is not told about), the CA
ConfigMap at /certs, a GCS Secret at /google, secret headers under /extraheaders, restartPolicy
OnFailure and FallbackToLogsOnError, placed by the CDI resource's `spec.workload` (`placement`). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts import importer_env as env
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, labels_of, name_of, uid_of
from cdi.controllers.placement import NO_PLACEMENT, Scheduling
from cdi.controllers.workerpodspec import is_block, worker_pod

DEFAULT_IMAGE = "pycdi/pycdi:latest"
IMPORTER_COMMAND = ("cdi-importer",)
COMPONENT = "importer"


@dataclass(frozen=True)
class ImporterPodInputs:
    pvc: Object
    pod_name: str
    config: ConfigView
    scratch_claim: str | None = None
    image: str = DEFAULT_IMAGE
    owner_uid: str = ""
    direct_io: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    placement: Scheduling = NO_PLACEMENT  # the CDI resource's spec.workload


def importer_pod_name(pvc_name: str) -> str:
    return f"importer-{pvc_name}"


def registry_host(endpoint: str) -> str:
    """The `host[:port]` of a `docker://` endpoint, as upstream compares it with insecureRegistries."""
    scheme = "docker://"
    return endpoint[len(scheme):].split("/", 1)[0] if endpoint.startswith(scheme) else ""


def registry_env(notes: dict[str, str], insecure_registries: list[str]) -> dict[str, str]:
    """Registry imports: the pull method, the platform, and INSECURE_TLS for a host CDIConfig lists."""
    values: dict[str, str] = {}
    if method := notes.get(ann.ANN_REGISTRY_IMPORT_METHOD):
        values[env.PULL_METHOD] = method
    if architecture := notes.get(ann.ANN_REGISTRY_IMAGE_ARCHITECTURE):
        values[env.REGISTRY_IMAGE_ARCHITECTURE] = architecture
    host = registry_host(notes.get(ann.ANN_ENDPOINT, ""))
    if host and host in insecure_registries:
        values[env.INSECURE_TLS] = "true"
    return values


def importer_env(inputs: ImporterPodInputs) -> list[dict[str, Any]]:
    pvc = inputs.pvc
    notes = annotations_of(pvc)
    source = notes.get(ann.ANN_SOURCE, "http")
    storage_class = (pvc.get("spec") or {}).get("storageClassName")
    overhead = "0" if is_block(pvc) else str(inputs.config.overhead(storage_class))
    request = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "")
    values = {
        env.SOURCE: source,
        env.ENDPOINT: notes.get(ann.ANN_ENDPOINT, ""),
        env.CONTENT_TYPE: notes.get(ann.ANN_CONTENT_TYPE, env.CONTENT_KUBEVIRT),
        env.IMAGE_SIZE: str(request),
        env.OWNER_UID: inputs.owner_uid or uid_of(pvc),
        env.FILESYSTEM_OVERHEAD: overhead,
        env.INSECURE_TLS: "true" if notes.get(ann.ANN_INSECURE_SKIP_VERIFY) == "true" else "false",
        env.PREALLOCATION: notes.get(ann.ANN_PREALLOCATION_REQUESTED, "false"),
    }
    if checksum := notes.get(ann.ANN_CHECKSUM):
        values[env.CHECKSUM] = checksum
    if inputs.direct_io:
        values[env.CACHE_MODE] = "TRYNONE"
    if inputs.scratch_claim:
        values[env.SCRATCH_PATH] = env.DEFAULT_SCRATCH_DIR
    if source == env.SOURCE_REGISTRY:
        values.update(registry_env(notes, inputs.config.insecure_registries))
    if notes.get(ann.ANN_CERT_CONFIG_MAP):
        values[env.CERT_DIR] = env.DEFAULT_CERT_DIR
    proxy = inputs.config.import_proxy
    for key, name in (("HTTPProxy", env.HTTP_PROXY), ("HTTPSProxy", env.HTTPS_PROXY), ("noProxy", env.NO_PROXY)):
        if proxy.get(key):
            values[name] = str(proxy[key])
    headers = sorted((k, v) for k, v in notes.items() if k.startswith(ann.ANN_EXTRA_HEADERS + "."))
    for i, (_, header) in enumerate(headers):
        values[f"{env.EXTRA_HEADER_PREFIX}{i}"] = header
    values.update(inputs.extra_env)
    result: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    if (secret := notes.get(ann.ANN_SECRET)) and source == env.SOURCE_GCS:
        # Upstream: a GCS Secret is a key file mounted at /google (see _volumes), not an access-key pair.
        result.append({"name": env.GOOGLE_APPLICATION_CREDENTIALS,
                       "value": f"{env.DEFAULT_GOOGLE_CREDENTIALS_DIR}/{env.GOOGLE_CREDENTIALS_FILE}"})
    elif secret:
        for name, key in ((env.ACCESS_KEY_ID, "accessKeyId"), (env.SECRET_KEY, "secretKey")):
            result.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return result


def _volumes(inputs: ImporterPodInputs) -> tuple[list[Object], list[Object], list[Object]]:
    pvc, notes = inputs.pvc, annotations_of(inputs.pvc)
    volumes: list[Object] = [{"name": "cdi-data-vol", "persistentVolumeClaim": {"claimName": name_of(pvc)}}]
    mounts: list[Object] = []
    devices: list[Object] = []
    if is_block(pvc):
        devices.append({"name": "cdi-data-vol", "devicePath": env.DEFAULT_BLOCK_PATH})
    else:
        mounts.append({"name": "cdi-data-vol", "mountPath": env.DEFAULT_DATA_DIR})
    if inputs.scratch_claim:
        volumes.append({"name": "cdi-scratch-vol", "persistentVolumeClaim": {"claimName": inputs.scratch_claim}})
        mounts.append({"name": "cdi-scratch-vol", "mountPath": env.DEFAULT_SCRATCH_DIR})
    if cert := notes.get(ann.ANN_CERT_CONFIG_MAP):
        volumes.append({"name": "cdi-cert-vol", "configMap": {"name": cert}})
        mounts.append({"name": "cdi-cert-vol", "mountPath": env.DEFAULT_CERT_DIR})
    if (secret := notes.get(ann.ANN_SECRET)) and notes.get(ann.ANN_SOURCE) == env.SOURCE_GCS:
        volumes.append({"name": "cdi-gcs-secret-vol", "secret": {"secretName": secret}})
        mounts.append({"name": "cdi-gcs-secret-vol", "mountPath": env.DEFAULT_GOOGLE_CREDENTIALS_DIR})
    secret_headers = sorted((k, v) for k, v in notes.items() if k.startswith(ann.ANN_SECRET_EXTRA_HEADERS + "."))
    for i, (_, secret) in enumerate(secret_headers):
        volumes.append({"name": f"cdi-extra-headers-vol-{i}", "secret": {"secretName": secret}})
        mounts.append({"name": f"cdi-extra-headers-vol-{i}", "mountPath": f"{env.DEFAULT_EXTRA_HEADERS_DIR}/{i}"})
    return volumes, mounts, devices


def importer_pod(inputs: ImporterPodInputs) -> Object:
    pvc = inputs.pvc
    volumes, mounts, devices = _volumes(inputs)
    container: Object = {
        "name": COMPONENT, "image": inputs.image, "command": list(IMPORTER_COMMAND), "args": ["-v=1"],
        "ports": [{"name": "metrics", "containerPort": 8443, "protocol": "TCP"}],
        "env": importer_env(inputs), "resources": inputs.config.pod_resources,
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if mounts:
        container["volumeMounts"] = mounts
    if devices:
        container["volumeDevices"] = devices
    labels = {**labels_of(pvc), ann.LABEL_APP: ann.APP_NAME, ann.LABEL_COMPONENT: COMPONENT,
              ann.LABEL_PROMETHEUS: "true"}
    return worker_pod(pvc, inputs.pod_name, labels, container, volumes,
                      {ann.ANN_CREATED_BY: "yes", **ann.POD_ANNOTATION_DEFAULTS}, service_account=True,
                      placement=inputs.placement)
