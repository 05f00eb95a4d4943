"""Sizing per upstream's formulas, blank disks, preallocation, archives, Block volumes on loop devices,
scratch-space signalling and live progress."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cdi.contracts.metrics import parse_progress
from cdi.contracts.termination import TerminationMessage
from cdi.quantity import parse_quantity
from cdi.sizing import usable_space
from tests.importer.conftest import Runner
from tests.support.catalog import ImageSet
from tests.support.nginx import Location, NginxServer

MiB = 1 << 20


def http(url: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, **extra}


@pytest.mark.parametrize("overhead", ["0", "0.06", "0.1"])
@pytest.mark.parametrize("size", ["100Mi", "1Gi", "10Gi", "1000M"])
def test_disk_is_resized_to_the_usable_space(size: str, overhead: str, nginx: NginxServer, images: ImageSet,
                                             run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("disk.qcow2.xz"), IMPORTER_IMAGE_SIZE=size, FILESYSTEM_OVERHEAD=overhead))
    assert run.returncode == 0, run.log
    requested = parse_quantity(size)
    assert run.disk.stat().st_size == usable_space(Decimal(overhead), requested)
    assert run.disk_sha256(images.virtual_size) == images.reference_sha256


def test_never_shrinks_an_image_that_fits(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    # 64 MiB image in a 66 MiB volume at 6 %: usable is 62 MiB, but the image fits the volume, so it stays.
    run = run_importer(http(nginx.url("disk.raw.gz"), IMPORTER_IMAGE_SIZE="66Mi", FILESYSTEM_OVERHEAD="0.06"))
    assert run.returncode == 0, run.log
    assert run.disk.stat().st_size == images.virtual_size


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_sparse_without_preallocation_and_full_with_it(nginx: NginxServer, run_importer: Runner) -> None:
    sparse = run_importer(http(nginx.url("disk.qcow2"), IMPORTER_IMAGE_SIZE="256Mi"))
    assert sparse.returncode == 0, sparse.log
    assert sparse.message is not None and sparse.message.preallocation_applied is False
    assert allocated(sparse.disk) < 4 * MiB  # the reference holds about 2 MiB of data
    full = run_importer(http(nginx.url("disk.raw.zst"), IMPORTER_IMAGE_SIZE="256Mi", PREALLOCATION="true"))
    assert full.returncode == 0, full.log
    assert full.message is not None and full.message.preallocation_applied is True
    assert allocated(full.disk) >= full.disk.stat().st_size


@pytest.mark.parametrize(("size", "overhead", "prealloc"), [("1Gi", "0.06", "false"), ("500Mi", "0", "true")])
def test_blank_disk(size: str, overhead: str, prealloc: str, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "none", "IMPORTER_IMAGE_SIZE": size, "FILESYSTEM_OVERHEAD": overhead,
                        "PREALLOCATION": prealloc})
    assert run.returncode == 0, run.log
    assert run.message == TerminationMessage("Import Complete", preallocation_applied=prealloc == "true")
    expected = usable_space(Decimal(overhead), parse_quantity(size))
    assert run.disk.stat().st_size == expected
    assert (allocated(run.disk) >= expected) == (prealloc == "true")
    assert oct(run.disk.stat().st_mode & 0o777) == "0o660"


def test_blank_archive_is_refused(run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "none", "IMPORTER_CONTENTTYPE": "archive", "IMPORTER_IMAGE_SIZE": "1Gi"})
    assert run.returncode == 1
    assert run.message is not None and run.message.message == "Cannot create empty disk with content type archive"


@pytest.mark.parametrize("name", ["files.tar", "files.tar.gz"])
def test_archive_is_unpacked_into_the_volume(name: str, nginx: NginxServer, images: ImageSet,
                                             run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(name), IMPORTER_CONTENTTYPE="archive"))
    assert run.returncode == 0, run.log
    for member, content in images.archive_members.items():
        assert (run.data / member).read_bytes() == content
    assert not run.disk.exists()


def test_conversion_without_scratch_asks_for_it(nginx: NginxServer, run_importer: Runner) -> None:
    """VHDX needs random access (qcow2 streams, see tests/streaming): from a server that ignores Range, a
    scratch volume is the only way."""
    run = run_importer(http(nginx.url("disk.vhdx", location=Location.NO_RANGES)), scratch=False)
    assert run.returncode == 0
    assert run.message is not None
    assert (run.message.scratch_space_required, run.message.preallocation_applied) == (True, False)
    assert run.message.message.startswith("scratch space required and none found: vhdx needs scratch space")
    assert list(run.data.iterdir()) == []


def test_raw_needs_no_scratch(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("disk.raw.xz")), scratch=False)
    assert run.returncode == 0, run.log
    assert run.disk_sha256() == images.reference_sha256


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "block.img"
    with backing.open("wb") as f:
        f.write(b"\xee" * (96 * MiB))  # stale data that must not show through the imported disk's holes
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def device_sha256(device: Path, length: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with device.open("rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


@pytest.mark.parametrize(("name", "prealloc"), [("disk.raw.gz", "false"), ("disk.qcow2.zst", "false"),
                                               ("disk.vhdx", "false"), ("disk.qcow2", "true"), ("disk.raw.xz", "true")])
def test_block_volume(name: str, prealloc: str, loop_device: Path, nginx: NginxServer, images: ImageSet,
                      run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(name), IMPORTER_IMAGE_SIZE="96Mi", PREALLOCATION=prealloc), data=loop_device)
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.preallocation_applied is (prealloc == "true")
    assert device_sha256(loop_device, images.virtual_size) == images.reference_sha256


def test_block_volume_too_small(loop_device: Path, nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("huge.qcow2")), data=loop_device)
    assert run.returncode == 1
    assert run.message is not None and run.message.reason == "ImageTooLarge"


def test_blank_block_volume_with_preallocation_is_zeroed(loop_device: Path, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "none", "PREALLOCATION": "true"}, data=loop_device)
    assert run.returncode == 0, run.log
    assert device_sha256(loop_device, 96 * MiB) == device_sha256_of_zeros(96 * MiB)


def device_sha256_of_zeros(length: int) -> str:
    import hashlib

    return hashlib.sha256(bytes(length)).hexdigest()


def test_progress_metric_rises_every_second(nginx: NginxServer, tmp_path: Path) -> None:
    """Import from the rate-limited location and scrape the metric like the controller does."""
    port_probe = __import__("socket").socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    (tmp_path / "data").mkdir()
    (tmp_path / "scratch").mkdir()
    env = {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "OWNER_UID": "uid-42",
           "IMPORTER_ENDPOINT": nginx.url("disk.qcow2", location=Location.SLOW),
           "CDI_DATA_PATH": str(tmp_path / "data"), "CDI_SCRATCH_PATH": str(tmp_path / "scratch"),
           "CDI_TERMINATION_LOG": str(tmp_path / "term"), "CDI_METRICS_ADDR": f"127.0.0.1:{port}"}
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    seen: list[float] = []
    proc = subprocess.Popen([sys.executable, "-m", "importer"], env=env, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=2) as r:
                    value = parse_progress(r.read().decode(), "uid-42")
                if value is not None and (not seen or value != seen[-1]):
                    seen.append(value)
            except OSError:
                pass
            time.sleep(0.25)
    finally:
        proc.wait(60)
    assert proc.returncode == 0
    assert seen == sorted(seen)
    assert len([v for v in seen if 0 < v < 100]) >= 2, seen
