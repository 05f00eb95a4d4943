"""The upload server pod and Service builders (`cdi.controllers.upload.podspec`): upstream's names,
labels, ports and env contract, for Filesystem and Block PVCs; the embedded pod runner accepts the pod.
Pure."""

from __future__ import annotations

from typing import Any

from cdi.contracts import upload_protocol as up
from cdi.controllers.config_view import ConfigView
from cdi.controllers.upload.podspec import UploadPodInputs, upload_pod, upload_service
from cdi.embedded.pods.spec import FieldRef, parse_pod
from importer.uploadserver.config import load_config

CONFIG = ConfigView({"filesystemOverhead": {"global": "0.055"}, "preallocation": False})


def claim(mode: str = "Filesystem", notes: dict[str, str] | None = None, name: str = "fedora") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "vms", "uid": "pvc-uid", "annotations": notes or {}},
            "spec": {"volumeMode": mode, "storageClassName": "local",
                     "resources": {"requests": {"storage": "10Gi"}}}}


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


def test_filesystem_upload_pod() -> None:
    pvc = claim(notes={"cdi.kubevirt.io/storage.preallocation.requested": "true"})
    pod = upload_pod(UploadPodInputs(pvc, up.upload_resource_name("fedora"), "cdi-upload-fedora-tls", CONFIG,
                                     scratch_claim="fedora-scratch", deadline="2030-01-01T00:00:00Z"))
    assert pod["metadata"]["name"] == "cdi-upload-fedora"
    assert pod["metadata"]["labels"] == {"app": "containerized-data-importer", "cdi.kubevirt.io": "cdi-upload-server",
                                         "service": "cdi-upload-fedora", "cdi.kubevirt.io/uploadTarget": "pvc-uid"}
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    assert env_of(pod) == {
        "LISTEN_ADDRESS": {"fieldRef": {"fieldPath": "status.podIP"}}, "LISTEN_PORT": "8443",
        "DESTINATION": "/data/disk.img", "TLS_KEY_FILE": "/etc/tls/tls.key", "TLS_CERT_FILE": "/etc/tls/tls.crt",
        "CLIENT_CERT_FILE": "/etc/tls/ca.crt", "CLIENT_NAME": "client.upload-server.cdi.kubevirt.io",
        "UPLOAD_IMAGE_SIZE": "10Gi", "FILESYSTEM_OVERHEAD": "0.055", "PREALLOCATION": "true",
        "OWNER_UID": "pvc-uid", "DEADLINE": "2030-01-01T00:00:00Z", "CDI_SCRATCH_PATH": "/scratch"}
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["cdi-uploadserver"]
    assert container["volumeMounts"] == [{"name": "cdi-data-vol", "mountPath": "/data"},
                                         {"name": "tls-secret", "mountPath": "/etc/tls", "readOnly": True},
                                         {"name": "cdi-scratch-vol", "mountPath": "/scratch"}]
    assert {"name": "tls-secret", "secret": {"secretName": "cdi-upload-fedora-tls"}} in pod["spec"]["volumes"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    info = parse_pod(pod)  # the embedded pod runner takes it as is
    listen = next(v for v in info.containers[0].env if v.name == "LISTEN_ADDRESS")
    assert listen.source == FieldRef("status.podIP")


def test_block_upload_pod_and_its_server_contract() -> None:
    pod = upload_pod(UploadPodInputs(claim("Block"), "cdi-upload-fedora", "tls", CONFIG,
                                     client_name="src-ns/src-pvc-vms/fedora"))
    container = pod["spec"]["containers"][0]
    assert container["volumeDevices"] == [{"name": "cdi-data-vol", "devicePath": "/dev/cdi-block-volume"}]
    assert container["volumeMounts"] == [{"name": "tls-secret", "mountPath": "/etc/tls", "readOnly": True}]
    env = env_of(pod)
    assert env["DESTINATION"] == "/dev/cdi-block-volume" and env["FILESYSTEM_OVERHEAD"] == "0"
    values = {k: v for k, v in env.items() if isinstance(v, str)}
    config = load_config({**values, "LISTEN_ADDRESS": "127.1.0.9"})
    assert config.client_name == "src-ns/src-pvc-vms/fedora"
    assert config.image_size == 10 << 30 and config.listen_port == 8443 and config.listen_address == "127.1.0.9"
    assert config.tls is not None and str(config.tls.client_ca) == "/etc/tls/ca.crt"


def test_upload_service_and_long_names() -> None:
    service = upload_service(claim())
    assert service["metadata"]["name"] == "cdi-upload-fedora"
    assert service["spec"] == {"ports": [{"name": "uploadserver", "protocol": "TCP", "port": 443, "targetPort": 8443}],
                               "selector": {"service": "cdi-upload-fedora"}}
    long_name = "a" * 70 + ".b"
    resource = up.upload_resource_name(long_name)
    service_name = up.upload_service_name(long_name)
    assert resource == f"cdi-upload-{long_name}"
    assert len(service_name) == 63 and service_name.endswith("-cdi") and "." not in service_name
    assert up.upload_service_name(long_name) == service_name
