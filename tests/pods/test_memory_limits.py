"""Limits do what users expect: the real importer, in a container under upstream's default limits (600M
memory, 750m CPU) as uid 107, imports a 20 GiB sparse qcow2 and a 4 GiB gzip-compressed raw image
from nginx without being killed, and the memory its cgroup saw at its peak is printed and checked
against the limit the cgroup held (the OOM side is in `test_containers` and the e2e tests).

The images are made in about a second (`bigimages`); the compressed one is multi-member gzip, so its
4 GiB of zeros are compressed once, not 4 GiB worth (`bench/container_memory.py` has the ordinary
single-member gzip and prints the same figures). Skipped, with the reason, where podman cannot run or
the image cannot be built.

The volume is a tmpfs of a fixed size (only the few MiB written use memory), not a directory of the
host's disk: the importer refuses a disk larger than the volume's free space, and how much the host has
free is not the test's to assume (CI's disk once had 18.9 GiB, and the 20 GiB image was refused)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi.contracts import importer_env as env
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.containers import ContainerLauncher, usage_of
from cdi.embedded.pods.runner import PodRunner
from tests.pods.bigimages import GiB, Layout, MiB, check_disk, make_gzip_raw, make_qcow2, scattered
from tests.pods.support import bind, claim, container_status, phase, pod, settle, storage_class
from tests.support.nginx import NginxServer
from tests.support.tls import TestPKI

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("pod_runtime", ["container"])]

LIMIT = "600M"  # upstream's default importer limit (CDIConfig's defaultPodResourceRequirements)
QCOW2 = scattered(20 * GiB, (0, 3 * 1024, 7 * 1024 + 5, 19 * 1024, 20 * 1024 - 1))
GZIP_RAW = scattered(4 * GiB, (0, 1000, 2500, 4095))
IMAGES = {"big.qcow2": (QCOW2, make_qcow2), "big.raw.gz": (GZIP_RAW, make_gzip_raw)}
VOLUME_SIZE = "24g"  # room for the largest image's virtual size, whatever the host has free


@pytest.fixture(scope="module")
def big_images(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[NginxServer]:
    """nginx serving the large images on loopback."""
    root = tmp_path_factory.mktemp("big-images")
    for name, (layout, make) in IMAGES.items():
        make(layout, root / name)
    with NginxServer(root, tmp_path_factory.mktemp("big-nginx"), pki) as server:
        yield server


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A volume of VOLUME_SIZE: a tmpfs mounted for the test (skipped, with the reason, where mounting is
    refused)."""
    path = tmp_path / "pv-dv"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_SIZE},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {VOLUME_SIZE} tmpfs for the volume: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def importer_pod(name: str, url: str, size: int) -> dict[str, object]:
    """Upstream's importer pod, with its default limits and user."""
    importer = {
        "name": "importer", "image": "quay.io/kubevirt/cdi-importer:v1.60.0", "args": ["-v=1"],
        "env": [{"name": env.SOURCE, "value": env.SOURCE_HTTP}, {"name": env.ENDPOINT, "value": url},
                {"name": env.IMAGE_SIZE, "value": str(size)}, {"name": env.OWNER_UID, "value": "dv-uid"},
                {"name": env.FILESYSTEM_OVERHEAD, "value": "0"}, {"name": env.PREALLOCATION, "value": "false"}],
        "resources": {"limits": {"cpu": "750m", "memory": LIMIT}, "requests": {"cpu": "100m", "memory": "60M"}},
        "volumeMounts": [{"name": "cdi-data-vol", "mountPath": "/data"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return pod(name, importer, restart_policy="Never",
               volumes=[{"name": "cdi-data-vol", "persistentVolumeClaim": {"claimName": "dv"}}],
               securityContext={"runAsNonRoot": True, "runAsUser": 107, "fsGroup": 107})


@pytest.mark.parametrize("image", list(IMAGES))
async def test_a_600m_importer_imports_a_large_sparse_image_without_being_killed(
        cluster: EmbeddedCluster, runner: PodRunner, launcher: ContainerLauncher, big_images: NginxServer,
        volume: Path, image: str) -> None:
    layout: Layout = IMAGES[image][0]
    await cluster.create(storage_class("local", "Immediate"))
    await cluster.create(claim("dv"))
    await bind(cluster, "dv", volume)
    await cluster.create(importer_pod("importer-big", big_images.url(image), layout.size))
    done = await settle(runner, cluster, "importer-big", phase("Succeeded", "Failed"), timeout=240)
    assert done is not None
    terminated = container_status(done, "importer")["state"]["terminated"]
    assert (done["status"]["phase"], terminated["exitCode"], terminated["reason"]) == ("Succeeded", 0, "Completed"), \
        terminated
    usage = usage_of(launcher, done["metadata"]["uid"], "importer")
    assert usage is not None
    print(f"\n{image} ({layout.size / GiB:g} GiB): peak {usage.peak / MiB:.1f} MiB in a cgroup limited to "
          f"{(usage.limit or 0) / MiB:.1f} MiB ({usage.peak / (usage.limit or 1):.0%}); limit hit {usage.limit_hits} "
          f"times")
    assert usage.limit is not None and 600_000_000 - 4096 < usage.limit <= 600_000_000  # (page-rounded) in force...
    assert usage.peak < usage.limit  # ...and it stayed under it
    check_disk(layout, volume / env.DISK_IMAGE_NAME)
