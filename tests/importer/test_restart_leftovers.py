"""What a killed worker leaves on its volume does not count against the next attempt: the restarted
`cdi-importer` and upload server remove a half-written disk before they measure the free space, so an
image that fits the volume is imported instead of refused as too large. The volume is a real 64 MiB
tmpfs (a fixed capacity, like the embedded mode's loop-mounted volumes)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from importer.target import PARTIAL_NAME
from importer.uploadserver.config import load_config
from importer.uploadserver.main import UploadServer
from tests.importer.conftest import Runner
from tests.support.nginx import NginxServer
from tests.support.tls import TestPKI

MiB = 1 << 20
VOLUME = 64 * MiB
IMAGE = 48 * MiB  # fits the volume, but not beside the 40 MiB a killed attempt left
LEFTOVER = 40 * MiB


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("leftover-images")
    (directory / "image.raw").write_bytes(os.urandom(IMAGE))
    return directory


@pytest.fixture(scope="module")
def image_server(image_dir: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(image_dir, tmp_path_factory.mktemp("nginx-leftovers"), pki) as server:
        yield server


@pytest.fixture
def killed_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB volume holding the partial disk of an attempt that was killed mid-write."""
    volume = tmp_path / "volume"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME}", "tmpfs", str(volume)], check=True)
    try:
        (volume / PARTIAL_NAME).write_bytes(os.urandom(LEFTOVER))
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def test_restarted_importer_discards_the_killed_attempts_disk(killed_volume: Path, image_dir: Path,
                                                              image_server: NginxServer, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": image_server.url("image.raw"),
                        "IMPORTER_IMAGE_SIZE": "64Mi", "FILESYSTEM_OVERHEAD": "0"}, data=killed_volume)
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete"
    assert sorted(p.name for p in killed_volume.iterdir()) == ["disk.img"]
    with run.disk.open("rb") as disk:
        assert disk.read(IMAGE) == (image_dir / "image.raw").read_bytes()


async def test_restarted_upload_server_discards_the_killed_attempts_disk(killed_volume: Path, image_dir: Path,
                                                                         tmp_path: Path) -> None:
    server = UploadServer(load_config({"CDI_UPLOAD_INSECURE": "true", "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": "0",
                                       "CDI_DATA_PATH": str(killed_volume), "UPLOAD_IMAGE_SIZE": "64Mi",
                                       "FILESYSTEM_OVERHEAD": "0", "CDI_TERMINATION_LOG": str(tmp_path / "log")}))
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{port}/v1beta1/upload",
                data=io.BytesIO((image_dir / "image.raw").read_bytes())) as response:
            status, text = response.status, await response.text()
    finally:
        await server.stop()
    assert (status, text) == (200, "")
    assert sorted(p.name for p in killed_volume.iterdir()) == ["disk.img"]
    with (killed_volume / "disk.img").open("rb") as disk:
        assert disk.read(IMAGE) == (image_dir / "image.raw").read_bytes()
