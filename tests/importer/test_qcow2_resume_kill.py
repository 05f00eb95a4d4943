"""A killed qcow2 import resumes: the real `cdi-importer` is SIGKILLed part-way through a qemu-img-made
qcow2 (compressed clusters, several L2 tables, one table moved behind its data), restarted on the same
volume, and must produce the disk `qemu-img convert -O raw` gives, with the holes an uninterrupted
conversion leaves, say `Resumed`, and fetch in total no more than the image plus one checkpoint
interval plus the metadata the restart read again (the ranges its record names). Sources: nginx,
moto's S3 and the GCS emulator behind the counting relay of `tests.importer.test_resume_kill`, whose
fixtures and helpers these tests share; and a Block volume whose records share the device's last MiB
with the disk's own bytes. A compressed qcow2 (qcow2.gz, qcow2.xz) resumes too:
`test_compressed_qcow2_resume_kill`."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.checkpoint import Checkpoint, CheckpointStore
from importer.checkpointdevice import DeviceTailStore
from importer.qcow2stream.restart import RestartRecord
from tests.importer.test_resume_kill import (
    INTERVAL,
    READ,
    SLACK,
    Volume,
    disk_bytes,
    gcs,
    kill_part_way,
    recorded_within,
    s3,
)
from tests.streaming.qcow2_builders import convert_with_stream, patterned, qemu_img, qemu_raw
from tests.streaming.test_qcow2_restart import Watch, allocation, convert, swap_l2_with_its_last_data
from tests.support.gcs import GcsEmulator
from tests.support.nginx import NginxServer
from tests.support.s3 import MotoS3
from tests.support.shaper import ShapedRelay
from tests.support.tls import TestPKI

__all__ = ["gcs", "s3"]  # fixtures shared with test_resume_kill

MiB = 1 << 20
SIZE = 8 * MiB
RATE = 6 * MiB
RANGE_HEAD = 2048  # response head of each ranged re-read
CLUSTER = 64 << 10  # a record falls due between clusters: the hook may run one cluster late


def _disk_image() -> bytes:
    """Compressible 128 KiB blocks with runs of zeros between them, and data at the very end."""
    rng = random.Random(1515)
    blocks = [patterned(128 << 10) if rng.random() < 0.6 or i == SIZE // (128 << 10) - 1 else bytes(128 << 10)
              for i in range(SIZE // (128 << 10))]
    return b"".join(blocks)


IMAGES = {
    "plain.qcow2": ("-o", "cluster_size=65536"),
    "compressed.qcow2": ("-c", "-o", "cluster_size=4096"),
    "late.qcow2": ("-o", "cluster_size=4096"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("qcow2-resume-images")
    raw = directory / "disk.raw"
    raw.write_bytes(_disk_image())
    for name, options in IMAGES.items():
        qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, raw, directory / name)
    swap_l2_with_its_last_data(directory / "late.qcow2", 1)  # guest 2-4 MiB: its table after its data
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=16384", raw, directory / "held.qcow2")
    swap_l2_with_its_last_data(directory / "held.qcow2", 0)  # one table for the disk, after all its data
    holetail = directory / "holetail.raw"  # the disk's last 2 MiB a hole
    holetail.write_bytes(raw.read_bytes()[:SIZE - 2 * MiB] + bytes(2 * MiB))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=65536", holetail, directory / "holetail.qcow2")
    for name in (*IMAGES, "held.qcow2", "holetail.qcow2"):
        assert qemu_raw(directory / name, directory / f"{name}.raw") == (holetail if name == "holetail.qcow2"
                                                                          else raw).read_bytes()
        convert_with_stream(directory / name, directory / f"{name}.stream")  # the holes of an uninterrupted run
    return directory


@pytest.fixture(scope="module")
def server(images: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(images, tmp_path_factory.mktemp("nginx-qcow2-resume"), pki) as nginx:
        yield nginx


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    vol = Volume(tmp_path)
    vol.data.mkdir()
    return vol


def reread(record: Checkpoint) -> int:
    """What the restart fetches again besides the rest of the image: the ranges the record names."""
    ranges = RestartRecord.decode(record.decoder_state).ranges
    return sum(end - start for start, end in ranges) + RANGE_HEAD * len(ranges)


def kill_and_resume(volume: Volume, env: dict[str, str], relay: ShapedRelay, image: Path,
                    at: float) -> tuple[Checkpoint, int, str]:
    """Kill the importer once the relay has sent `at` of the image, restart it; returns the last
    record, the bytes fetched by both attempts and the second attempt's log."""
    store = CheckpointStore.beside(volume.data)
    relay.reset()
    kill_part_way(volume, env, relay, int(image.stat().st_size * at),
                  caught_up=recorded_within(store.load, INTERVAL + READ + CLUSTER))
    record = store.load()
    assert record is not None and record.format == "qcow2" and record.wire_offset > 0, record
    code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert message.resume_message is not None and f"at source byte {record.wire_offset} " in message.resume_message
    assert not store.path.exists()
    return record, relay.downstream, log


def assert_same_disk(volume: Volume, images: Path, name: str) -> None:
    assert hashlib.sha256(disk_bytes(volume, SIZE + 1)).hexdigest() == \
        hashlib.sha256((images / "disk.raw").read_bytes()).hexdigest()
    assert allocation(volume.data / "disk.img") == allocation(images / f"{name}.stream")


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("band", [(0.2, 0.5), (0.5, 0.85)], ids=["early", "late"])
def test_http_qcow2_import_killed_at_a_random_point_resumes_with_the_same_disk(
        name: str, band: tuple[float, float], volume: Volume, server: NginxServer, images: Path) -> None:
    image = images / name
    at = random.uniform(*band)
    checksum = hashlib.sha256(image.read_bytes()).hexdigest()
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "IMPORTER_CHECKSUM": f"sha256:{checksum}"}
        record, fetched, log = kill_and_resume(volume, env, relay, image, at)
    assert "read the image's tables again" in log, (at, log)
    assert_same_disk(volume, images, name)
    size = image.stat().st_size
    assert fetched <= size + INTERVAL + READ + CLUSTER + SLACK + reread(record), (at, fetched, size, reread(record))
    ranged = [line for line in server.access_log_lines() if f"/{name} " in line and '"bytes=' in line]
    assert len(ranged) >= 2 and all(" 206 " in line for line in ranged[-2:]), ranged


def test_s3_qcow2_import_killed_part_way_resumes_with_the_same_disk(
        volume: Volume, s3: MotoS3, images: Path) -> None:
    name = "compressed.qcow2"
    s3.upload("qcow2-resume", name, images / name)
    port = int(s3.http_url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/qcow2-resume/{name}",
               "IMPORTER_ACCESS_KEY_ID": "test-access", "IMPORTER_SECRET_KEY": "test-secret",
               "IMPORTER_CHECKSUM": "md5:" + hashlib.md5((images / name).read_bytes()).hexdigest()}
        record, fetched, _ = kill_and_resume(volume, env, relay, images / name, 0.5)
    assert_same_disk(volume, images, name)
    size = (images / name).stat().st_size
    assert fetched <= size + INTERVAL + READ + CLUSTER + SLACK + reread(record), (fetched, size)


def test_gcs_qcow2_import_killed_part_way_resumes_with_the_same_disk(
        volume: Volume, gcs: GcsEmulator, images: Path) -> None:
    name = "late.qcow2"
    gcs.bucket("qcow2-resume")
    gcs.upload("qcow2-resume", name, images / name)
    port = int(gcs.url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "gcs", "IMPORTER_ENDPOINT": f"gs://qcow2-resume/{name}",
               "STORAGE_EMULATOR_HOST": f"127.0.0.1:{relay.port}"}
        record, fetched, _ = kill_and_resume(volume, env, relay, images / name, 0.5)
    assert_same_disk(volume, images, name)
    size = (images / name).stat().st_size
    assert fetched <= size + INTERVAL + READ + CLUSTER + SLACK + reread(record), (fetched, size)


def test_a_stretch_without_checkpoints_is_logged_and_a_kill_there_resumes_from_the_one_before(
        volume: Volume, server: NginxServer, images: Path, tmp_path: Path) -> None:
    """All data before its one L2 table: past 4 MiB of it held back, no checkpoint until the table."""
    name, interval = "held.qcow2", 128 << 10
    survey = Watch()
    convert(images / name, tmp_path / "survey.raw", survey)
    refused = [position for position, why in survey.seen if why is not None]
    assert refused and refused[-1] - refused[0] > 6 * interval
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "CDI_CHECKPOINT_INTERVAL": str(interval)}
        first_log = kill_part_way(volume, env, relay, (refused[0] + refused[-1]) // 2)
        record = store.load()
        assert record is not None and refused[0] - interval - 4 * CLUSTER <= record.wire_offset < refused[0]
        code, message, log = volume.run(env)
    assert f"no checkpoint since source byte {record.wire_offset}: " in first_log, first_log
    assert "held back until it arrives" in first_log
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert message.resume_message is not None and f"at source byte {record.wire_offset} " in message.resume_message
    assert len(RestartRecord.decode(record.decoder_state).spooled) * 16384 > 3 * MiB  # read again
    assert_same_disk(volume, images, name)


def test_a_qcow2_replaced_between_attempts_starts_over_when_its_tables_are_read_again(
        volume: Volume, server: NginxServer, images: Path) -> None:
    changing = images / "changing.qcow2"
    changing.write_bytes((images / "plain.qcow2").read_bytes())
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/changing.qcow2"}
        kill_part_way(volume, env, relay, changing.stat().st_size // 2,
                      caught_up=recorded_within(store.load, INTERVAL + READ + CLUSTER))
        changing.write_bytes((images / "late.qcow2").read_bytes())
        os.utime(changing, (time.time() + 5, time.time() + 5))  # a new Last-Modified, hence a new ETag
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "the source changed since the checkpoint" in message.resume_message
    assert disk_bytes(volume, SIZE + 1) == (images / "disk.raw").read_bytes()


@pytest.fixture
def exact_device(tmp_path: Path) -> Iterator[Path]:
    """A Block volume exactly the disk's size: its checkpoint slots are the disk's last MiB."""
    backing = tmp_path / "block.img"
    backing.write_bytes(b"\xee" * SIZE)  # stale data that must not show through the disk's holes
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


@pytest.mark.parametrize("name", ["compressed.qcow2", "holetail.qcow2"])
def test_block_volume_qcow2_import_resumes_and_its_records_never_stay_in_the_disk(
        name: str, exact_device: Path, tmp_path: Path, server: NginxServer, images: Path) -> None:
    """The disk's last MiB holds the records until guest data is about to land there (compressed.qcow2
    has data at the very end), or until the end of the import (holetail.qcow2 has a hole there, which
    must read as zeros, not as records or stale bytes)."""
    volume = Volume(tmp_path)
    expected = (images / f"{name}.raw").read_bytes()
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "CDI_DATA_PATH": str(exact_device)}
        device = DeviceTailStore(exact_device, SIZE)
        kill_part_way(volume, env, relay, int((images / name).stat().st_size * 0.4),
                      caught_up=recorded_within(device.load, INTERVAL + READ + CLUSTER))
        record = device.load()
        assert record is not None and record.wire_offset > 0 and record.target_offset <= device.limit
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert "no more checkpoints" in log, log
    with exact_device.open("rb") as disk:
        assert disk.read() == expected
    if name == "holetail.qcow2":
        assert expected[-2 * MiB:] == bytes(2 * MiB)
