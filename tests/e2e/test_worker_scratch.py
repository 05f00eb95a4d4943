"""Scratch space end to end through `cdi serve`: an importer pod without a scratch volume never uses the
host's /scratch, even when that directory exists. It asks for scratch space, gets a scratch claim, and
the DataVolume is imported through the claim; /scratch is left exactly as it was."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdi.contracts import annotations as ann
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.nginx import Location, NginxServer

pytestmark = pytest.mark.slow

HOST_SCRATCH = Path("/scratch")
MANIFEST = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: vmdk-dv
spec:
  storage:
    resources:
      requests:
        storage: 128Mi
  source:
    http:
      url: "{url}"
"""


@dataclass(frozen=True)
class DirectoryState:
    entries: tuple[str, ...]
    mtime_ns: int  # creating and removing a file in it changes it, even if nothing is left

    @classmethod
    def of(cls, path: Path) -> DirectoryState:
        return cls(tuple(sorted(entry.name for entry in path.iterdir())), path.stat().st_mtime_ns)


@pytest.fixture
def host_scratch() -> Iterator[Path]:
    """A /scratch directory on the host for the test's duration (one already there is left as it is)."""
    created = not HOST_SCRATCH.exists()
    HOST_SCRATCH.mkdir(exist_ok=True)
    try:
        yield HOST_SCRATCH
    finally:
        if created:
            shutil.rmtree(HOST_SCRATCH, ignore_errors=True)


def test_a_pod_without_scratch_never_uses_the_hosts_scratch_directory(
        control_plane: ControlPlane, nginx: NginxServer, images: ImageSet, host_scratch: Path) -> None:
    before = DirectoryState.of(host_scratch)
    # A VMDK is converted by qemu-img from a file, and a server without range requests cannot be read
    # in place: the import needs scratch space.
    control_plane.apply(MANIFEST.format(url=nginx.url("disk.vmdk", location=Location.NO_RANGES)))
    control_plane.cdi("wait", "dv/vmdk-dv", "--for=condition=Ready", "--timeout=180s", timeout=200)
    dv = control_plane.get("dv", "vmdk-dv")
    assert dv is not None and dv["status"]["phase"] == "Succeeded"
    pvc = control_plane.get("pvc", "vmdk-dv")
    assert pvc is not None
    assert pvc["metadata"]["annotations"].get(ann.ANN_REQUIRES_SCRATCH) == "true"  # it asked for a claim
    digest = hashlib.sha256()
    with (control_plane.volume_path("vmdk-dv") / "disk.img").open("rb") as disk:
        digest.update(disk.read(images.virtual_size))
    assert digest.hexdigest() == images["disk.vmdk"].content_sha256
    assert DirectoryState.of(host_scratch) == before
