"""DataVolumes end to end with worker pods as podman containers (`cdi serve --pod-runtime container`): an
http import from the session nginx and a `cdi image-upload`, bytes verified, with the importer and
upload server running in the project's image as uid 107 under the default 600M limit; a host-assisted
clone from a Block source (the cloner reading the source's device, an upload server writing the
target); and an importer given too little memory (CDIConfig's podResourceRequirements) is
OOMKilled, which the DataVolume says.
Skipped, with the reason, where podman cannot run or the image cannot be built (tests/image/building)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_clone import SOURCE_NS, clone_dv, data_of, golden, leftovers, wait_succeeded
from tests.e2e.test_upload import image_upload
from tests.image.building import BuildFailed, build, unavailable_reason
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane, _cdi_binary, release_storage
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.slow

IMPORT = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: {name}
spec:
  storage:
    resources:
      requests:
        storage: 1Gi
  source:
    http:
      url: "{url}"
"""
TIGHT_CONFIG = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDIConfig
metadata:
  name: config
spec:
  podResourceRequirements:
    limits:
      memory: 8M
"""


@dataclass
class ContainerPlane(ControlPlane):
    """`cdi serve` whose worker pods run as containers of `image`."""

    image: str = ""

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([_cdi_binary(), "serve", "--pod-backoff", str(self.pod_backoff),
                                             "--uploadproxy-port", "0", "--pod-runtime", "container",
                                             "--pod-image", self.image],
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if self.cdi("get", "cdiconfig", "config", "-o", "json", check=False).returncode == 0 and \
                    "started" in self.log.read_text():
                return
            time.sleep(0.2)
        raise AssertionError(f"cdi serve did not become ready:\n{self.log.read_text()}")


@pytest.fixture(scope="session")
def worker_image() -> str:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"container runtime: {reason}")
    try:
        return build()
    except BuildFailed as e:
        pytest.skip(f"container runtime: the image cannot be built: {e}")


@pytest.fixture
def plane(tmp_path: Path, worker_image: str) -> Iterator[ContainerPlane]:
    control = ContainerPlane(tmp_path / "home", image=worker_image)
    control.start()
    try:
        yield control
    finally:
        control.stop()
        release_storage(control.home)


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


def worker_status(plane: ControlPlane, pod: str) -> dict[str, Any]:
    statuses = ((plane.get("pod", pod) or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def test_an_http_import_runs_in_a_container_and_writes_the_right_bytes(plane: ContainerPlane, nginx: NginxServer,
                                                                       images: ImageSet) -> None:
    plane.apply(IMPORT.format(name="boxed", url=nginx.url("disk.qcow2.gz")))
    seen: dict[str, Any] = {}

    def running_in_a_container() -> bool:
        seen.update(worker_status(plane, "importer-boxed"))
        return str(seen.get("containerID", "")).startswith("podman://")

    plane.wait_for(running_in_a_container, "the importer's container")
    plane.cdi("wait", "dv/boxed", "--for=condition=Ready", "--timeout=180s", timeout=200)
    dv = plane.get("dv", "boxed")
    assert dv is not None and dv["status"]["phase"] == "Succeeded"
    disk = plane.volume_path("boxed") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    assert disk.stat().st_uid == 107  # written by the pod's user, not by root


def test_an_upload_goes_through_an_upload_server_container(plane: ContainerPlane, images: ImageSet) -> None:
    code, out, err = asyncio.run(image_upload(plane, "dv", "uploaded", "--size", "1Gi",
                                              "--image-path", str(images.path("disk.qcow2"))))
    assert code == 0, out + err + plane.log_tail()
    assert "completed successfully" in out
    dv = plane.get("dv", "uploaded")
    assert dv is not None and dv["status"]["phase"] == "Succeeded"
    disk = plane.volume_path("uploaded") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    assert disk.stat().st_uid == 107
    assert f"worker pods run as containers of {plane.image}" in plane.log.read_text()


def test_a_host_assisted_clone_of_a_block_volume_runs_its_cloner_in_a_container(
        plane: ContainerPlane, nginx: NginxServer, images: ImageSet) -> None:
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SOURCE_NS}})
    plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile", "metadata": {"name": "local"},
                 "spec": {"cloneStrategy": "copy"}})
    plane.apply(golden("golden", nginx.url("disk.qcow2"), mode="Block"))
    wait_succeeded(plane, "golden", SOURCE_NS)
    plane.apply(clone_dv("copy-of-golden", "golden", mode="Filesystem", size="512Mi"))
    dv = wait_succeeded(plane, "copy-of-golden")
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == "copy"
    assert data_of(plane, "copy-of-golden", "default", images.virtual_size) == images.reference_sha256
    assert f"worker pods run as containers of {plane.image}" in plane.log.read_text()
    plane.wait_for(lambda: not leftovers(plane, SOURCE_NS), "temporary clone objects to go", 30)


def test_an_importer_with_too_little_memory_is_oom_killed_and_the_datavolume_says_so(
        plane: ContainerPlane, nginx: NginxServer) -> None:
    plane.apply(TIGHT_CONFIG)
    plane.wait_for(lambda: ((plane.get("cdiconfig", "config", namespace="") or {}).get("status") or {})
                   .get("defaultPodResourceRequirements", {}).get("limits", {}).get("memory") == "8M",
                   "CDIConfig to take the 8M limit")
    plane.apply(IMPORT.format(name="starved", url=nginx.url("disk.qcow2.gz")))

    def oom_condition() -> dict[str, Any] | None:
        conditions = ((plane.get("dv", "starved") or {}).get("status") or {}).get("conditions") or []
        running = next((c for c in conditions if c.get("type") == "Running"), None)
        return running if running and running.get("reason") == "OOMKilled" else None

    running = plane.wait_for(oom_condition, "the DataVolume's Running condition to say OOMKilled", timeout=180)
    assert running["status"] == "False"
    assert "Importer pod importer-starved was killed for using too much memory (exit code 137, SIGKILL)" in \
        running["message"]
    described = plane.cdi("describe", "dv", "starved").stdout
    assert "OOMKilled" in described
