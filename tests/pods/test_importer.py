"""The real importer as a pod: an upstream-shaped importer pod spec runs `cdi-importer` from this project,
writes into a Filesystem PV that is a plain directory, and its termination message reaches the pod status."""

from __future__ import annotations

from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.contracts.termination import IMPORT_COMPLETE, TerminationMessage
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.runner import PodRunner
from tests.pods.support import bind, both_runtimes, claim, container_status, phase, pod, settle, storage_class

MI = 1024 * 1024


def importer_pod(name: str, source: str, restart_policy: str = "OnFailure") -> dict[str, object]:
    """As upstream's import controller renders it: no command (the image's entrypoint), `-v=1`, the
    target claim at /data, OnFailure, FallbackToLogsOnError."""
    importer = {
        "name": "importer", "image": "quay.io/kubevirt/cdi-importer:v1.60.0", "args": ["-v=1"],
        "env": [{"name": env.SOURCE, "value": source}, {"name": env.IMAGE_SIZE, "value": "64Mi"},
                {"name": env.OWNER_UID, "value": "dv-uid"}, {"name": env.FILESYSTEM_OVERHEAD, "value": "0"},
                {"name": env.PREALLOCATION, "value": "false"}],
        "volumeMounts": [{"name": "cdi-data-vol", "mountPath": "/data"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"name": "metrics", "containerPort": 8443, "protocol": "TCP"}],
    }
    return pod(name, importer, restart_policy=restart_policy,
               volumes=[{"name": "cdi-data-vol", "persistentVolumeClaim": {"claimName": "dv"}}])


async def bound_claim(cluster: EmbeddedCluster, tmp_path: Path) -> Path:
    volume = tmp_path / "pv-dv"
    volume.mkdir()
    await cluster.create(storage_class("local", "Immediate"))
    await cluster.create(claim("dv"))
    await bind(cluster, "dv", volume)
    return volume


@both_runtimes
async def test_a_blank_import_completes_and_reports_through_the_termination_message(
        cluster: EmbeddedCluster, runner: PodRunner, tmp_path: Path) -> None:
    volume = await bound_claim(cluster, tmp_path)
    await cluster.create(importer_pod("importer-dv", env.SOURCE_NONE))
    done = await settle(runner, cluster, "importer-dv", phase("Succeeded", "Failed"), timeout=60)
    assert done is not None
    terminated = container_status(done, "importer")["state"]["terminated"]
    assert (done["status"]["phase"], terminated["exitCode"]) == ("Succeeded", 0), terminated
    message = TerminationMessage.parse(terminated["message"])
    assert message.message == IMPORT_COMPLETE
    assert message.scratch_space_required is None  # upstream's blank message has no such key
    disk = volume / env.DISK_IMAGE_NAME
    assert 0 < disk.stat().st_size <= 64 * MI


@both_runtimes
async def test_an_importer_failure_message_reaches_the_status(cluster: EmbeddedCluster, runner: PodRunner,
                                                              tmp_path: Path) -> None:
    await bound_claim(cluster, tmp_path)
    await cluster.create(importer_pod("importer-bad", "glance", restart_policy="Never"))
    done = await settle(runner, cluster, "importer-bad", phase("Succeeded", "Failed"), timeout=60)
    assert done is not None and done["status"]["phase"] == "Failed"
    terminated = container_status(done, "importer")["state"]["terminated"]
    assert terminated["exitCode"] == 1
    assert TerminationMessage.parse(terminated["message"]).message == "Unknown data source: glance"
