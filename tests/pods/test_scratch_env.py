"""Scratch space is what the pod mounts, never a host path: the importer and upload server pod specs,
run through the local runner's env and layout, and read back by the workers' own config parsers. A pod
without a scratch volume has no scratch space, whatever the host keeps at /scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView
from cdi.controllers.importpod.podspec import ImporterPodInputs, importer_pod
from cdi.controllers.upload.podspec import UploadPodInputs, upload_pod
from cdi.embedded.pods.envvars import EnvSources, process_env, resolve_env
from cdi.embedded.pods.layout import LocalVolume, container_layout
from cdi.embedded.pods.spec import PodInfo, parse_pod
from importer.config import load_config as importer_config
from importer.uploadserver.config import load_config as upload_config

ROOT = Path("/state/pods/default/importer-dv/root/importer")
DATA = Path("/pools/pv-data")
SCRATCH = Path("/pools/pv-scratch")
VOLUMES = {"cdi-data-vol": LocalVolume(DATA), "cdi-scratch-vol": LocalVolume(SCRATCH),
           "tls-secret": LocalVolume(Path("/state/tls"), materialised=True)}


def pvc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "dv", "namespace": "default", "uid": "pvc-uid",
                         "annotations": {ann.ANN_ENDPOINT: "http://example.org/disk.vmdk", ann.ANN_SOURCE: "http"}},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}}


def local_env(pod: PodInfo) -> dict[str, str]:
    """The environment the local runner starts the pod's one container with."""
    container = pod.containers[0]
    layout = container_layout(container, VOLUMES, root=ROOT, termination_file=Path("/state/term"),
                              pod_ip="127.1.0.9")
    own = resolve_env(container, EnvSources(fields={"status.podIP": "127.1.0.9"}), "default")
    return process_env({"PATH": "/usr/bin"}, own, layout, {})


def importer(scratch: str | None) -> PodInfo:
    return parse_pod(importer_pod(ImporterPodInputs(pvc(), "importer-dv", ConfigView(), scratch_claim=scratch)))


def uploader(scratch: str | None) -> PodInfo:
    return parse_pod(upload_pod(UploadPodInputs(pvc(), "cdi-upload-dv", "tls", ConfigView(), scratch_claim=scratch)))


@pytest.mark.parametrize("make", [importer, uploader])
def test_a_pod_without_a_scratch_volume_has_no_scratch_space(make: Any) -> None:
    pod = make(None)
    env = {e.name: e.value for e in pod.containers[0].env}
    assert "CDI_SCRATCH_PATH" not in env
    environ = local_env(pod)
    assert "CDI_SCRATCH_PATH" not in environ
    config = importer_config(environ) if make is importer else upload_config(environ)
    assert config.scratch_path is None
    assert config.data_path == DATA


@pytest.mark.parametrize("make", [importer, uploader])
def test_a_pod_with_a_scratch_claim_names_it_and_the_runner_maps_it_to_the_claim(make: Any) -> None:
    pod = make("dv-scratch")
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["CDI_SCRATCH_PATH"] == "/scratch"  # the in-pod mount path, as upstream mounts scratch
    config = importer_config(local_env(pod)) if make is importer else upload_config(local_env(pod))
    assert config.scratch_path == SCRATCH


def test_a_scratch_path_the_pod_does_not_mount_stays_inside_the_container() -> None:
    spec = importer_pod(ImporterPodInputs(pvc(), "importer-dv", ConfigView(),
                                          extra_env={"CDI_SCRATCH_PATH": "/scratch"}))
    environ = local_env(parse_pod(spec))
    assert environ["CDI_SCRATCH_PATH"] == f"{ROOT}/scratch"


@pytest.mark.parametrize("value", [None, ""])
def test_the_workers_take_an_absent_or_empty_scratch_path_as_none(value: str | None) -> None:
    environ = {"IMPORTER_SOURCE": "http", "CDI_DATA_PATH": "/tmp"}
    if value is not None:
        environ["CDI_SCRATCH_PATH"] = value
    assert importer_config(environ).scratch_path is None
    assert upload_config(environ).scratch_path is None
