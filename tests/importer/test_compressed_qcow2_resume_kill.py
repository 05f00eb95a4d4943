"""A killed import of a compressed qcow2 (qcow2.gz, multi-block qcow2.xz, multi-frame qcow2.zst) resumes: the real
`cdi-importer` is SIGKILLed at a random point, restarted on the same volume, and must produce the disk
`qemu-img convert -O raw` gives, say `Resumed` at the record's source byte, read the image's tables
again from the ranges kept beside the record (the source serves only compressed bytes), and fetch in
total no more than the image plus `LAG`: one checkpoint interval, the decompressor's distance back to
its restart point (one DEFLATE block, xz block or zstd frame), one cluster and one read in flight (the relay is
held at the kill point until the importer's last record is within `LAG` of it, so a record further
back than that fails the test). Sources: nginx (single-member gzip and multi-block xz of qemu's
compressed and plain layouts, multi-frame zstd), moto's S3 and the GCS emulator behind the counting relay of
`tests.importer.test_resume_kill`, whose fixtures and helpers these tests share; a Block volume with
a scratch volume for the kept ranges; a source replaced between the attempts starts over and says so;
a single-block xz, which has no restart point, starts over and says why."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from importer.checkpoint import Checkpoint, CheckpointStore
from importer.checkpointdevice import DEVICE_RANGES_NAME, DeviceTailStore
from importer.compressedcheckpoints import POINT_REACH
from importer.compressedqcow2 import CompressedRestart
from tests.importer.test_resume_kill import INTERVAL, READ, SLACK, Volume, gcs, kill_part_way, recorded_within, s3
from tests.streaming.qcow2_builders import patterned, qemu_img, qemu_raw
from tests.support.gcs import GcsEmulator
from tests.support.nginx import NginxServer
from tests.support.s3 import MotoS3
from tests.support.shaper import ShapedRelay
from tests.support.tls import TestPKI

__all__ = ["gcs", "s3"]  # fixtures shared with test_resume_kill

MiB = 1 << 20
SIZE = 8 * MiB
RATE = 6 * MiB
CLUSTER = 64 << 10
XZ_BLOCK = 512 << 10
ZSTD_FRAME = 512 << 10
GZIP_BLOCK = 128 << 10  # bound on a DEFLATE block of these images (gzip -1 writes ~17-64 KiB ones)
LAG = {"gz": INTERVAL + READ + CLUSTER + GZIP_BLOCK, "xz": INTERVAL + READ + CLUSTER + XZ_BLOCK,
       "zst": INTERVAL + READ + CLUSTER + ZSTD_FRAME}


def _disk_image() -> bytes:
    """128 KiB blocks: random ones (the compressed image stays about as large as the data), compressible
    ones and runs of zeros; data at the very end."""
    rng = random.Random(1517)
    blocks = []
    for i in range(SIZE // (128 << 10)):
        pick = rng.random()
        blocks.append(rng.randbytes(128 << 10) if pick < 0.45 else patterned(128 << 10)
                      if pick < 0.75 or i == SIZE // (128 << 10) - 1 else bytes(128 << 10))
    return b"".join(blocks)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("compressed-qcow2-resume-images")
    raw = directory / "disk.raw"
    raw.write_bytes(_disk_image())
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=65536", raw, directory / "plain.qcow2")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "cluster_size=4096", raw,
             directory / "compressed.qcow2")
    for name in ("plain.qcow2", "compressed.qcow2"):
        assert qemu_raw(directory / name, directory / f"{name}.raw") == raw.read_bytes()
        (directory / f"{name}.gz").write_bytes(gzip.compress((directory / name).read_bytes(), 1))
        blocks = directory / f"blocks-{name}"
        blocks.write_bytes((directory / name).read_bytes())
        subprocess.run(["xz", "-0", "-T2", f"--block-size={XZ_BLOCK}", str(blocks)], check=True)
        (directory / f"blocks-{name}.xz").rename(directory / f"{name}.xz")
    frames = zstandard.ZstdCompressor(level=1)  # frames of 512 KiB, as `zstd --rsyncable`-like tools cut them
    plain = (directory / "plain.qcow2").read_bytes()
    (directory / "plain.qcow2.zst").write_bytes(b"".join(frames.compress(plain[i:i + ZSTD_FRAME])
                                                         for i in range(0, len(plain), ZSTD_FRAME)))
    single = directory / "single.qcow2"
    single.write_bytes((directory / "plain.qcow2").read_bytes())
    subprocess.run(["xz", "-0", "-T1", str(single)], check=True)  # one block: no restart point
    return directory


@pytest.fixture(scope="module")
def server(images: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(images, tmp_path_factory.mktemp("nginx-compressed-qcow2"), pki) as nginx:
        yield nginx


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    vol = Volume(tmp_path)
    vol.data.mkdir()
    return vol


def kill_and_resume(volume: Volume, env: dict[str, str], relay: ShapedRelay, image: Path, at: float,
                    lag: int) -> tuple[Checkpoint, int, str]:
    """Kill the importer once the relay has sent `at` of the image and its last record is within `lag`
    of that, restart it; returns the last record, the bytes fetched by both attempts and the second log."""
    store = CheckpointStore.beside(volume.data)
    relay.reset()
    kill_part_way(volume, env, relay, int(image.stat().st_size * at), caught_up=recorded_within(store.load, lag))
    record = store.load()
    assert record is not None and record.format == "qcow2" and record.compression is not None, record
    assert record.wire_offset > 0 and (volume.data / ".disk.img.checkpoint.ranges").is_file()
    code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert message.resume_message is not None and f"at source byte {record.wire_offset} " in message.resume_message
    assert "read the image's tables again from the ranges kept beside the checkpoint" in log, log
    assert not store.path.exists() and not (volume.data / ".disk.img.checkpoint.ranges").exists()
    return record, relay.downstream, log


def assert_disk(volume: Volume, images: Path) -> None:
    with (volume.data / "disk.img").open("rb") as disk:
        assert hashlib.sha256(disk.read(SIZE + 1)).hexdigest() == \
            hashlib.sha256((images / "disk.raw").read_bytes()).hexdigest()


def skip_of(record: Checkpoint) -> int:
    return CompressedRestart.decode(record.decoder_state).skip


@pytest.mark.parametrize("name", ["compressed.qcow2.gz", "plain.qcow2.gz", "compressed.qcow2.xz",
                                  "plain.qcow2.xz", "plain.qcow2.zst"])
@pytest.mark.parametrize("band", [(0.2, 0.5), (0.5, 0.85)], ids=["early", "late"])
def test_http_compressed_qcow2_import_killed_at_a_random_point_resumes_with_the_same_disk(
        name: str, band: tuple[float, float], volume: Volume, server: NginxServer, images: Path) -> None:
    image = images / name
    at = random.uniform(*band)
    lag = LAG[name.rsplit(".", 1)[1]]
    checksum = hashlib.sha256(image.read_bytes()).hexdigest()  # over the compressed bytes, end to end
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "IMPORTER_CHECKSUM": f"sha256:{checksum}"}
        record, fetched, _ = kill_and_resume(volume, env, relay, image, at, lag)
    assert_disk(volume, images)
    assert 0 <= skip_of(record) <= POINT_REACH + XZ_BLOCK
    size = image.stat().st_size
    assert fetched <= size + lag + SLACK, (at, fetched, size)
    ranged = [line for line in server.access_log_lines() if f"/{name} " in line and '"bytes=' in line]
    assert ranged and " 206 " in ranged[-1], ranged


def test_s3_qcow2_gz_import_killed_part_way_resumes_with_the_same_disk(
        volume: Volume, s3: MotoS3, images: Path) -> None:
    name = "compressed.qcow2.gz"
    s3.upload("compressed-qcow2-resume", name, images / name)
    port = int(s3.http_url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "s3",
               "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/compressed-qcow2-resume/{name}",
               "IMPORTER_ACCESS_KEY_ID": "test-access", "IMPORTER_SECRET_KEY": "test-secret",
               "IMPORTER_CHECKSUM": "md5:" + hashlib.md5((images / name).read_bytes()).hexdigest()}
        _, fetched, _ = kill_and_resume(volume, env, relay, images / name, random.uniform(0.3, 0.7), LAG["gz"])
    assert_disk(volume, images)
    assert fetched <= (images / name).stat().st_size + LAG["gz"] + SLACK


def test_gcs_qcow2_xz_import_killed_part_way_resumes_with_the_same_disk(
        volume: Volume, gcs: GcsEmulator, images: Path) -> None:
    name = "plain.qcow2.xz"
    gcs.bucket("compressed-qcow2-resume")
    gcs.upload("compressed-qcow2-resume", name, images / name)
    port = int(gcs.url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "gcs", "IMPORTER_ENDPOINT": f"gs://compressed-qcow2-resume/{name}",
               "STORAGE_EMULATOR_HOST": f"127.0.0.1:{relay.port}"}
        _, fetched, _ = kill_and_resume(volume, env, relay, images / name, random.uniform(0.3, 0.7), LAG["xz"])
    assert_disk(volume, images)
    assert fetched <= (images / name).stat().st_size + LAG["xz"] + SLACK


def test_a_qcow2_gz_replaced_between_attempts_starts_over_and_says_so(
        volume: Volume, server: NginxServer, images: Path) -> None:
    changing = images / "changing.qcow2.gz"
    changing.write_bytes((images / "plain.qcow2.gz").read_bytes())
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/changing.qcow2.gz"}
        kill_part_way(volume, env, relay, changing.stat().st_size // 2,
                      caught_up=recorded_within(store.load, LAG["gz"]))
        assert (record := store.load()) is not None and record.wire_offset > 0
        changing.write_bytes((images / "compressed.qcow2.gz").read_bytes())
        os.utime(changing, (time.time() + 5, time.time() + 5))  # a new Last-Modified, hence a new ETag
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "the source changed since the checkpoint" in message.resume_message
    assert_disk(volume, images)


def test_a_single_block_qcow2_xz_starts_over_and_says_why(volume: Volume, server: NginxServer, images: Path) -> None:
    name = "single.qcow2.xz"
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}"}
        kill_part_way(volume, env, relay, (images / name).stat().st_size // 2)
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "single-threaded xz writes a single block" in message.resume_message
    assert_disk(volume, images)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Path]:
    """A Block volume a little larger than the disk, full of stale bytes that must not show through."""
    backing = tmp_path / "block.img"
    backing.write_bytes(b"\xee" * (SIZE + 2 * MiB))
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        yield Path(loop)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


@pytest.mark.parametrize("name", ["compressed.qcow2.gz", "plain.qcow2.xz"])
def test_block_volume_compressed_qcow2_import_resumes_with_its_ranges_on_scratch(
        name: str, device: Path, tmp_path: Path, server: NginxServer, images: Path) -> None:
    volume = Volume(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    image = images / name
    lag = LAG[name.rsplit(".", 1)[1]]
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "CDI_DATA_PATH": str(device), "CDI_SCRATCH_PATH": str(scratch)}
        store = DeviceTailStore(device, SIZE + 2 * MiB)
        kill_part_way(volume, env, relay, int(image.stat().st_size * random.uniform(0.3, 0.7)),
                      caught_up=recorded_within(store.load, lag))
        record = store.load()
        assert record is not None and record.compression is not None and record.wire_offset > 0
        assert (scratch / DEVICE_RANGES_NAME).is_file()  # the image's tables, kept on scratch
        code, message, log = volume.run(env)
        fetched = relay.downstream
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert "read the image's tables again from the ranges kept beside the checkpoint" in log, log
    assert fetched <= image.stat().st_size + lag + SLACK
    with device.open("rb") as disk:
        assert hashlib.sha256(disk.read(SIZE)).hexdigest() == \
            hashlib.sha256((images / "disk.raw").read_bytes()).hexdigest()
        assert b"PYCDICKP" not in disk.read()  # the record slots are cleared after the import
    assert not (scratch / DEVICE_RANGES_NAME).exists()


def test_block_volume_without_scratch_says_why_a_qcow2_gz_is_not_checkpointed(
        device: Path, tmp_path: Path, server: NginxServer, images: Path) -> None:
    volume = Volume(tmp_path)
    name = "compressed.qcow2.gz"
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "CDI_DATA_PATH": str(device)}
        kill_part_way(volume, env, relay, (images / name).stat().st_size // 2)
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "whose pod has no scratch volume" in message.resume_message
    with device.open("rb") as disk:
        assert disk.read(SIZE) == (images / "disk.raw").read_bytes()
