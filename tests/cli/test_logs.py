"""`cdi logs`: the container log files the pod runner writes under `<home>/pods/`, current and previous."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cdi.cli.state import pod_log_path
from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import Run, RunAsync, seed
from tests.cli.manifests import pod


def _write_log(home: Path, name: str, container: str, text: str, previous: bool = False,
               namespace: str = "default") -> Path:
    path = pod_log_path(home, namespace, name, container, previous)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_log_layout(tmp_path: Path) -> None:
    assert pod_log_path(tmp_path, "ns", "importer-a", "importer") == tmp_path / "pods/ns/importer-a/importer.log"
    assert pod_log_path(tmp_path, "ns", "importer-a", "importer", previous=True) == \
        tmp_path / "pods/ns/importer-a/importer.previous.log"


def test_logs_of_first_named_and_previous_containers(cdi: Run, home: Path) -> None:
    seed(home, pod("importer-fedora", ("importer", "sidecar")), pod("solo", namespace="vms"))
    _write_log(home, "importer-fedora", "importer", "I0510 starting import\nI0510 Import Complete\n")
    _write_log(home, "importer-fedora", "sidecar", "sidecar says hi\n")
    _write_log(home, "importer-fedora", "importer", "E0510 first try failed\n", previous=True)
    _write_log(home, "solo", "importer", "namespaced\n", namespace="vms")

    first = cdi("logs", "importer-fedora")
    assert (first.code, first.out) == (0, "I0510 starting import\nI0510 Import Complete\n")
    assert first.err == 'Defaulted container "importer" out of: importer, sidecar\n'
    assert cdi("logs", "pod/importer-fedora", "-c", "sidecar").out == "sidecar says hi\n"
    assert cdi("logs", "importer-fedora", "-p").out == "E0510 first try failed\n"
    assert cdi("logs", "solo", "-n", "vms").out == "namespaced\n"


def test_logs_errors(cdi: Run, home: Path) -> None:
    seed(home, pod("importer-fedora"))
    missing_pod = cdi("logs", "ghost")
    assert (missing_pod.code, missing_pod.err) == (1, 'error: pods "ghost" not found\n')
    no_log = cdi("logs", "importer-fedora")
    assert (no_log.code, no_log.err) == (
        1, 'error: container "importer" in pod "importer-fedora" is waiting to start: ContainerCreating (no log yet)\n')
    no_previous = cdi("logs", "importer-fedora", "--previous")
    assert no_previous.err == 'error: previous terminated container "importer" in pod "importer-fedora" not found\n'
    wrong = cdi("logs", "importer-fedora", "-c", "nope")
    assert wrong.err == "error: container nope is not valid for pod importer-fedora\n"


async def test_follow_until_the_container_terminates(cluster: EmbeddedCluster, cdi_in_thread: RunAsync,
                                                     home: Path) -> None:
    await cluster.create(pod("importer-fedora"))
    await cluster.patch_status("v1", "Pod", "importer-fedora", {"status": {"phase": "Running", "containerStatuses": [
        {"name": "importer", "ready": True, "restartCount": 0, "state": {"running": {}}}]}}, "default")
    log = _write_log(home, "importer-fedora", "importer", "line 1\n")
    following = asyncio.create_task(cdi_in_thread("logs", "-f", "importer-fedora"))
    await asyncio.sleep(0.3)
    with log.open("a") as f:
        f.write("line 2\nlíne 3 ünicode\n")
    await asyncio.sleep(0.2)
    assert not following.done()
    with log.open("a") as f:
        f.write("Import Complete\n")
    await cluster.patch_status("v1", "Pod", "importer-fedora", {"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "importer", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}, "default")
    result = await asyncio.wait_for(following, 10)
    assert (result.code, result.out) == (0, "line 1\nline 2\nlíne 3 ünicode\nImport Complete\n")
