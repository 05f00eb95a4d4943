"""Container environments and command lines, as kubelet builds them, rewritten for a local process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdi.embedded.pods.envvars import (
    EnvError,
    EnvSources,
    command_line,
    expand,
    image_entrypoint,
    pod_fields,
    process_env,
    referenced_objects,
    resolve_env,
)
from cdi.embedded.pods.layout import LocalVolume, container_layout
from cdi.embedded.pods.spec import PodInfo, parse_pod

SOURCES = EnvSources(
    objects={("Secret", "creds"): {"accessKeyId": b"AKIA", "secretKey": b"s3cr3t"},
             ("ConfigMap", "settings"): {"mode": b"fast", "level": b"3"},
             ("Secret", "gone"): None},
    fields={"metadata.name": "importer-dv", "status.podIP": "127.1.0.7"})


def pod_with(*env: dict[str, object], env_from: list[dict[str, object]] | None = None,
             **container: object) -> PodInfo:
    return parse_pod({"metadata": {"name": "importer-dv", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
                      "spec": {"containers": [{"name": "main", "env": list(env), "envFrom": env_from or [],
                                               **container}]}})


def secret_ref(name: str, key: str, optional: bool = False) -> dict[str, object]:
    return {"secretKeyRef": {"name": name, "key": key, "optional": optional}}


def test_values_secret_and_config_map_keys_and_fields_resolve_in_order() -> None:
    pod = pod_with({"name": "ACCESS", "valueFrom": secret_ref("creds", "accessKeyId")},
                   {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                   {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "ADDR", "value": "$(POD)@$(IP) costs $$5 $(UNDEFINED)"},
                   {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                   env_from=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}])
    assert resolve_env(pod.containers[0], SOURCES, "ns") == {
        "CFG_mode": "fast", "CFG_level": "3", "ACCESS": "AKIA", "MODE": "fast", "POD": "importer-dv",
        "ADDR": "importer-dv@$(IP) costs $5 $(UNDEFINED)",  # only earlier variables expand, as in Kubernetes
        "IP": "127.1.0.7"}
    assert referenced_objects(pod.containers[0]) == {("Secret", "creds"), ("ConfigMap", "settings")}


@pytest.mark.parametrize(("env", "message"), [
    ({"name": "X", "valueFrom": secret_ref("gone", "k")}, 'secret "gone" not found'),
    ({"name": "X", "valueFrom": secret_ref("creds", "nope")}, "couldn't find key nope in Secret ns/creds"),
    ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "k"}}}, 'configmap "other" not found'),
    ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.priority"}}}, "unsupported fieldPath spec.priority"),
])
def test_missing_objects_and_keys_are_config_errors_in_kubelet_words(env: dict[str, object], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        resolve_env(pod_with(env).containers[0], SOURCES, "ns")


def test_optional_references_to_missing_things_are_skipped() -> None:
    pod = pod_with({"name": "A", "valueFrom": secret_ref("gone", "k", optional=True)},
                   {"name": "B", "valueFrom": secret_ref("creds", "nope", optional=True)},
                   env_from=[{"secretRef": {"name": "gone", "optional": True}}])
    assert resolve_env(pod.containers[0], SOURCES, "ns") == {}


def test_pod_fields_cover_the_downward_api_env_subset() -> None:
    fields = pod_fields(pod_with(), "127.1.0.3", "127.0.0.1")
    assert fields["metadata.namespace"] == "ns"
    assert fields["metadata.uid"] == "u-1"
    assert fields["status.podIP"] == "127.1.0.3"
    assert fields["metadata.labels['app']"] == "x"


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)/$(B)", "1/2"), ("$$(A)", "$(A)"), ("$(A", "$(A"), ("$", "$"), ("a$b", "a$b"), ("$(C)", "$(C)"),
])
def test_expansion(value: str, expected: str) -> None:
    assert expand(value, {"A": "1", "B": "2"}) == expected


def test_process_env_and_command_line_use_local_paths() -> None:
    pod = pod_with({"name": "IMPORTER_CERT_DIR", "value": "/certs"}, {"name": "CDI_METRICS_ADDR", "value": "off"},
                   volumeMounts=[{"name": "certs", "mountPath": "/certs"}, {"name": "data", "mountPath": "/data"}],
                   command=["/usr/bin/cdi-importer"], args=["-v=$(LEVEL)", "--out=/data/disk.img", "$(IMPORTER_CERT_DIR)"])
    layout = container_layout(pod.containers[0], {"certs": LocalVolume(Path("/v/certs")), "data": LocalVolume(Path("/pv"))},
                              root=Path("/r"), termination_file=Path("/t/main"), pod_ip="127.1.0.2")
    own = resolve_env(pod.containers[0], SOURCES, "ns") | {"LEVEL": "1"}
    environ = process_env({"PATH": "/venv/bin:/usr/bin", "CDI_DATA_PATH": "stale"}, own, layout, {"MARK": "m"})
    assert environ == {"PATH": "/venv/bin:/usr/bin", "CDI_DATA_PATH": "/pv", "CDI_TERMINATION_LOG": "/t/main",
                       "CDI_METRICS_ADDR": "off",  # the pod's own setting wins over ours
                       "IMPORTER_CERT_DIR": "/v/certs", "LEVEL": "1", "MARK": "m"}
    assert command_line(pod.containers[0], own, layout, ()) == [
        "/usr/bin/cdi-importer", "-v=1", "--out=/data/disk.img", "/v/certs"]  # only whole words that are paths


@pytest.mark.parametrize(("image", "expected"), [
    ("quay.io/kubevirt/cdi-importer:v1.60.0", ("cdi-importer",)),
    ("cdi-uploadserver@sha256:abc", ("cdi-uploadserver",)),
    ("localhost:5000/tools/cdi-cloner", ("cdi-cloner",)),
    ("", ()),
])
def test_an_image_without_command_runs_the_program_it_is_named_after(image: str, expected: tuple[str, ...]) -> None:
    assert image_entrypoint(image) == expected
