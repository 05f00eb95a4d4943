"""The control plane's half of a registry import, as pure functions: a DataVolume's `source.registry`
becomes PVC annotations, and those plus CDIConfig's `spec.insecureRegistries` become importer env."""

from __future__ import annotations

from typing import Any

from cdi.api import DataVolume
from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView
from cdi.controllers.datavolume.claim import source_annotations
from cdi.controllers.importpod.podspec import ImporterPodInputs, importer_pod, registry_host

SEED_SOURCE = {"registry": {"url": "docker://registry.example:5000/disks/fedora:latest",
                            "secretRef": "data-source-secret", "certConfigMap": "tls-certs"}}


def claim(notes: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "fedora-dv", "namespace": "default", "uid": "pvc-uid", "annotations": notes},
            "spec": {"storageClassName": "local", "resources": {"requests": {"storage": "10Gi"}}}}


def env_of(notes: dict[str, str], config: ConfigView) -> dict[str, Any]:
    pod = importer_pod(ImporterPodInputs(claim(notes), "importer-fedora-dv", config))
    container = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]} | {
        "mounts": {m["mountPath"] for m in container.get("volumeMounts", [])}}


def dv(source: dict[str, Any]) -> DataVolume:
    return DataVolume.model_validate({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                                      "metadata": {"name": "fedora-dv", "namespace": "default"},
                                      "spec": {"source": source, "storage": {}}})


def test_seed_registry_source_mounts_the_secret_and_ca_the_upstream_way() -> None:
    notes = source_annotations(dv(SEED_SOURCE))
    assert notes == {ann.ANN_SOURCE: "registry", ann.ANN_ENDPOINT: "docker://registry.example:5000/disks/fedora:latest",
                     ann.ANN_SECRET: "data-source-secret", ann.ANN_CERT_CONFIG_MAP: "tls-certs"}
    env = env_of(notes, ConfigView())
    assert env["IMPORTER_SOURCE"] == "registry" and env["INSECURE_TLS"] == "false"
    assert env["IMPORTER_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "data-source-secret", "key": "accessKeyId"}}
    assert env["IMPORTER_SECRET_KEY"] == {"secretKeyRef": {"name": "data-source-secret", "key": "secretKey"}}
    assert env["IMPORTER_CERT_DIR"] == "/certs" and "/certs" in env["mounts"]
    assert "IMPORTER_PULL_METHOD" not in env and "IMPORTER_REGISTRY_IMAGE_ARCHITECTURE" not in env


def test_pull_method_and_platform_reach_the_importer() -> None:
    source = {"registry": {"url": "docker://quay.io/containerdisks/centos-stream:8", "pullMethod": "node",
                           "platform": {"architecture": "arm64"}}}
    env = env_of(source_annotations(dv(source)), ConfigView())
    assert env["IMPORTER_PULL_METHOD"] == "node" and env["IMPORTER_REGISTRY_IMAGE_ARCHITECTURE"] == "arm64"


def test_insecure_registries_come_from_the_cdiconfig_spec() -> None:
    config = ConfigView.of({"spec": {"insecureRegistries": ["registry.example:5000"]}, "status": {}})
    assert config.insecure_registries == ["registry.example:5000"]
    notes = source_annotations(dv(SEED_SOURCE))
    assert env_of(notes, config)["INSECURE_TLS"] == "true"
    other = {**notes, ann.ANN_ENDPOINT: "docker://registry.example:5001/disks/fedora:latest"}
    assert env_of(other, config)["INSECURE_TLS"] == "false"
    http = {ann.ANN_SOURCE: "http", ann.ANN_ENDPOINT: "http://registry.example:5000/x"}
    assert env_of(http, config)["INSECURE_TLS"] == "false"


def test_registry_host() -> None:
    assert registry_host("docker://127.0.0.1:5000/a/b:c") == "127.0.0.1:5000"
    assert registry_host("docker://kubevirt/fedora") == "kubevirt"  # as upstream's url.Host
    assert registry_host("oci-archive:/x.tar") == ""
