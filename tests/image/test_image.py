"""The built image holds every entry point and its tools, runs as uid 1001, is small, and imports a
disk from the session nginx the way an importer pod would: the pod's paths (/data, the termination
log at /dev/termination-log) mounted from the host and owned by the container's user (`:U`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cdi.contracts import importer_env as env
from cdi.contracts.termination import IMPORT_COMPLETE, TerminationMessage
from tests.image.conftest import BUILD_TIMEOUT, Image
from tests.support.catalog import ImageSet
from tests.support.nginx import NginxServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

MAX_IMAGE_BYTES = 350 * 1000 * 1000  # podman reports decimal megabytes
USER_ID = "1001"


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while length > 0 and (block := f.read(min(length, 1 << 20))):
            digest.update(block)
            length -= len(block)
    return digest.hexdigest()


def test_image_is_small(image: Image) -> None:
    size = image.size()
    print(f"\n{image.reference}: {size / 1e6:.1f} MB")
    assert size < MAX_IMAGE_BYTES


def test_entry_points_and_tools_run_as_the_unprivileged_user(image: Image) -> None:
    cli = image.run(["cdi", "--help"])
    assert cli.returncode == 0, cli.stderr
    assert "usage: cdi" in cli.stdout
    qemu = image.run(["qemu-img", "--version"])
    assert qemu.returncode == 0, qemu.stderr
    assert qemu.stdout.startswith("qemu-img version")
    tools = ["cdi-importer", "cdi-uploadserver", "cdi-uploadproxy", "nbdkit"]
    found = image.run(["sh", "-c", 'id -u; for tool in "$@"; do command -v "$tool"; done', "sh", *tools])
    assert found.returncode == 0, found.stderr
    lines = found.stdout.split()
    assert lines[0] == USER_ID
    assert [Path(p).name for p in lines[1:]] == tools


def test_importer_writes_the_disk_from_nginx(image: Image, nginx: NginxServer, images: ImageSet,
                                             tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    termination = tmp_path / "termination-log"
    termination.touch()
    environ = {env.SOURCE: env.SOURCE_HTTP, env.ENDPOINT: nginx.url("disk.qcow2"),
               env.IMAGE_SIZE: str(images.virtual_size),
               # The pod's defaults otherwise; the metrics listener must not take the host's :8443.
               env.METRICS_ADDR: "127.0.0.1:0"}
    options = ["--user", USER_ID, "-v", f"{data}:{env.DEFAULT_DATA_DIR}:U",
               "-v", f"{termination}:{env.DEFAULT_TERMINATION_LOG}:U",
               *[arg for key, value in environ.items() for arg in ("-e", f"{key}={value}")]]
    run = image.run(["cdi-importer", "-v=1"], options=options, timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    message = TerminationMessage.parse(termination.read_text())
    assert message.message == IMPORT_COMPLETE
    assert message.scratch_space_required is False
    disk = data / env.DISK_IMAGE_NAME
    assert disk.stat().st_size >= images.virtual_size
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
