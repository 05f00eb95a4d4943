"""A killed importer resumes: the real `cdi-importer` is SIGKILLed at a random point of the download,
restarted on the same volume, and must produce a byte-identical disk while fetching in total no more
than the image plus one checkpoint interval (plus the one read and, for compressed images, the one
gzip member or DEFLATE block, xz block or zstd frame in flight when the record was due). Sources: nginx, moto's S3
and the GCS emulator, each behind a throttling relay (`tests.support.shaper`) that counts what the
importer fetched across both attempts. The kill point is a byte count: the relay holds there, and the
importer is killed once its last record is within one interval of it (it has taken in what it got:
on a busy machine a fixed pause is not enough, and bytes still in its socket would count as lost).
A single-member gzip resumes inside its member (at a DEFLATE block boundary, `importer.gzipblocks`),
on a Filesystem and a Block volume. A source that changed between the attempts, and shapes that
cannot resume (a single-block xz, a single-frame zstd), start over and say why in the termination message, which becomes the claim's event (qcow2 resumes:
`test_qcow2_resume_kill`)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from cdi.contracts.termination import TerminationMessage
from importer.checkpoint import Checkpoint, CheckpointCorrupt, CheckpointStore
from importer.checkpointdevice import DeviceTailStore
from importer.target import PARTIAL_NAME
from tests.support.gcs import GcsEmulator
from tests.support.nginx import NginxServer
from tests.support.s3 import MotoS3
from tests.support.shaper import ShapedRelay
from tests.support.tls import TestPKI

MiB = 1 << 20
SIZE = 8 * MiB
INTERVAL = MiB // 2
READ = MiB  # the writer's read size: a record falls due only between reads
MEMBER = MiB  # uncompressed bytes per gzip member / xz stream in the test images
BLOCK = 64 << 10  # bound on a DEFLATE block of single.raw.gz (gzip -1 writes ~17 KiB ones here), and an input read
SLACK = 64 << 10  # response heads
RATE = 12 * MiB
CONSUME = 0.3  # seconds the importer gets to take in what the held relay sent before it is killed


def _disk_image() -> bytes:
    """Random 128 KiB blocks with runs of zeros between them (a sparse-looking disk)."""
    rng = random.Random(15)
    blocks = [rng.randbytes(128 << 10) if rng.random() < 0.6 else bytes(128 << 10) for _ in range(SIZE // (128 << 10))]
    return b"".join(blocks)


def _members(data: bytes, compress: Callable[[bytes], bytes]) -> bytes:
    return b"".join(compress(data[i:i + MEMBER]) for i in range(0, len(data), MEMBER))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("resume-images")
    data = _disk_image()
    (directory / "disk.raw").write_bytes(data)
    (directory / "disk.raw.gz").write_bytes(_members(data, lambda d: gzip.compress(d, 1)))
    (directory / "disk.raw.xz").write_bytes(_members(data, lambda d: lzma.compress(d, preset=0)))
    (directory / "disk.raw.zst").write_bytes(_members(data, zstandard.ZstdCompressor(level=1).compress))
    blocks = directory / "blocks.raw"  # one xz stream of 1 MiB blocks, as `xz -T` writes them
    blocks.write_bytes(data)
    subprocess.run(["xz", "-0", "-T2", f"--block-size={MEMBER}", str(blocks)], check=True)
    (directory / "single.raw.gz").write_bytes(gzip.compress(data, 1))
    (directory / "single.raw.xz").write_bytes(lzma.compress(data, preset=0))  # one block, as plain `xz` writes
    (directory / "single.raw.zst").write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(directory / "disk.raw"),
                    str(directory / "disk.qcow2")], check=True)
    return directory


@pytest.fixture(scope="module")
def server(image_dir: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(image_dir, tmp_path_factory.mktemp("nginx-resume"), pki) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with MotoS3() as moto:
        yield moto


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with GcsEmulator(tmp_path_factory.mktemp("gcs-resume")) as emulator:
        yield emulator


@dataclass
class Volume:
    """One DataVolume's claim: the importer's data directory and its termination log."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def termination(self) -> Path:
        return self.root / "termination"

    def environ(self, extra: dict[str, str]) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "CDI_DATA_PATH": str(self.data), "CDI_TERMINATION_LOG": str(self.termination),
                "CDI_METRICS_ADDR": "127.0.0.1:0", "CDI_EXTRA_HEADERS_DIR": str(self.root / "no-headers"),
                "IMPORTER_PROXY_CERT_DIR": str(self.root / "no-proxy-certs"),
                "FILESYSTEM_OVERHEAD": "0", "CDI_CHECKPOINT_INTERVAL": str(INTERVAL), **extra}

    def start(self, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "importer"], env=self.environ(env), text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def run(self, env: dict[str, str]) -> tuple[int, TerminationMessage, str]:
        self.termination.unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, "-m", "importer"], env=self.environ(env), capture_output=True,
                              text=True, timeout=120, check=False)
        return proc.returncode, TerminationMessage.parse(self.termination.read_text()), proc.stderr


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    vol = Volume(tmp_path)
    vol.data.mkdir()
    return vol


def kill_part_way(volume: Volume, env: dict[str, str], relay: ShapedRelay, at: int, *,
                  caught_up: Callable[[int], bool] | None = None, signum: int = signal.SIGKILL) -> str:
    """Start the importer, hold the relay once it has sent `at` bytes, let the importer take in what it
    got, SIGKILL it and release the relay; returns its log. `caught_up(held)` says when the importer
    has taken it in (its last record is within an interval of the hold); without it, CONSUME seconds."""
    relay.hold_at = held = relay.downstream + at
    try:
        proc = volume.start(env)
        deadline = time.monotonic() + 60
        while relay.downstream < held or (caught_up is not None and not caught_up(held)):
            assert proc.poll() is None, f"the importer ended before the kill at {at}: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, f"the importer did not get to byte {at} with a recent checkpoint"
            time.sleep(0.005)
        if caught_up is None:
            time.sleep(CONSUME)
        os.kill(proc.pid, signum)
        _, log = proc.communicate(timeout=30)
    finally:
        relay.hold_at = None
    # A SIGTERM is handled: the importer stops and exits as a container runtime reports it (143).
    assert proc.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum), log
    return log


def recorded_within(load: Callable[[], Checkpoint | None], lag: int, start: int = 0,
                    beyond: int = 0) -> Callable[[int], bool]:
    """Whether there is a record past `beyond` at most `lag` bytes behind the relay's hold (`start`:
    the source offset the relay's first byte had)."""
    def caught_up(held: int) -> bool:
        try:
            record = load()
        except CheckpointCorrupt:
            return False
        return record is not None and record.wire_offset > beyond and record.wire_offset >= start + held - lag
    return caught_up


def disk_bytes(volume: Volume, length: int) -> bytes:
    with (volume.data / "disk.img").open("rb") as disk:
        return disk.read(length)


def resume_after_kill(volume: Volume, env: dict[str, str], relay: ShapedRelay, wire_size: int,
                      rng: random.Random, member: int) -> tuple[TerminationMessage, int, Checkpoint]:
    at = int(wire_size * rng.uniform(0.25, 0.85))
    relay.reset()
    store = CheckpointStore.beside(volume.data)
    kill_part_way(volume, env, relay, at, caught_up=recorded_within(store.load, INTERVAL + READ + member))
    record = store.load()
    assert record is not None and 0 < record.wire_offset <= at
    code, message, log = volume.run(env)
    assert code == 0, log
    assert message.message == "Import Complete"
    assert not (volume.data / PARTIAL_NAME).exists() and not CheckpointStore.beside(volume.data).path.exists()
    return message, relay.downstream, record


CASES = [("disk.raw", 0), ("disk.raw.gz", MEMBER), ("single.raw.gz", BLOCK), ("disk.raw.xz", MEMBER),
         ("blocks.raw.xz", MEMBER), ("disk.raw.zst", MEMBER)]


@pytest.mark.parametrize(("name", "member"), CASES)
def test_http_import_killed_at_a_random_point_resumes_byte_identical(
        name: str, member: int, volume: Volume, server: NginxServer, image_dir: Path) -> None:
    wire_size = (image_dir / name).stat().st_size
    checksum = hashlib.sha256((image_dir / name).read_bytes()).hexdigest()
    rng = random.Random()
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "IMPORTER_CHECKSUM": f"sha256:{checksum}"}
        message, fetched, record = resume_after_kill(volume, env, relay, wire_size, rng, member)
    assert message.resume_decision == "Resumed", message
    if name == "single.raw.gz":  # inside its only member: the DEFLATE position and window
        assert len(record.decoder_state) > 32 << 10 and record.target_offset >= 32 << 10
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()
    assert fetched <= wire_size + INTERVAL + READ + member + SLACK, (fetched, wire_size)
    ranged = [line for line in server.access_log_lines() if f"/{name} " in line and '"bytes=' in line]
    assert ranged and " 206 " in ranged[-1], ranged


@pytest.mark.parametrize(("name", "member"), [("disk.raw.gz", MEMBER), ("single.raw.gz", BLOCK)])
def test_s3_import_killed_at_a_random_point_resumes_byte_identical(
        name: str, member: int, volume: Volume, s3: MotoS3, image_dir: Path) -> None:
    s3.upload("resume", name, image_dir / name)
    wire_size = (image_dir / name).stat().st_size
    port = int(s3.http_url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/resume/{name}",
               "IMPORTER_ACCESS_KEY_ID": "test-access", "IMPORTER_SECRET_KEY": "test-secret",
               "IMPORTER_CHECKSUM": "md5:" + hashlib.md5((image_dir / name).read_bytes()).hexdigest()}
        message, fetched, record = resume_after_kill(volume, env, relay, wire_size, random.Random(), member)
    assert message.resume_decision == "Resumed", message
    assert record.decoder_state or name != "single.raw.gz"
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()
    assert fetched <= wire_size + INTERVAL + READ + member + SLACK, (fetched, wire_size)


@pytest.mark.parametrize(("name", "member"), [("disk.raw", 0), ("single.raw.gz", BLOCK)])
def test_gcs_import_killed_at_a_random_point_resumes_byte_identical(
        name: str, member: int, volume: Volume, gcs: GcsEmulator, image_dir: Path) -> None:
    gcs.bucket("resume")
    gcs.upload("resume", name, image_dir / name)
    wire_size = (image_dir / name).stat().st_size
    port = int(gcs.url.rsplit(":", 1)[1])
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "gcs", "IMPORTER_ENDPOINT": f"gs://resume/{name}",
               "STORAGE_EMULATOR_HOST": f"127.0.0.1:{relay.port}"}
        message, fetched, record = resume_after_kill(volume, env, relay, wire_size, random.Random(), member)
    assert message.resume_decision == "Resumed", message
    assert record.decoder_state or name != "single.raw.gz"
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()
    assert fetched <= wire_size + INTERVAL + READ + member + SLACK, fetched


def test_a_source_that_changed_between_attempts_starts_over_and_says_so(
        volume: Volume, server: NginxServer, image_dir: Path) -> None:
    original = (image_dir / "disk.raw").read_bytes()
    changed = image_dir / "changing.raw"
    changed.write_bytes(original)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/changing.raw"}
        kill_part_way(volume, env, relay, SIZE // 2)
        new = bytes(reversed(original))
        changed.write_bytes(new)
        os.utime(changed, (time.time() + 5, time.time() + 5))  # a new Last-Modified, hence a new ETag
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "the source changed since the checkpoint" in message.resume_message
    assert disk_bytes(volume, SIZE + 1) == new


@pytest.mark.parametrize(("name", "why"), [
    ("single.raw.xz", "stopped before its first checkpoint (an xz stream restarts at block ends"),
    ("single.raw.zst", "stopped before its first checkpoint (a zstd stream restarts at frame ends"),
])
def test_shapes_that_cannot_resume_start_over_and_say_why(name: str, why: str, volume: Volume,
                                                          server: NginxServer, image_dir: Path) -> None:
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}"}
        kill_part_way(volume, env, relay, (image_dir / name).stat().st_size // 2)
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and why in message.resume_message, message.resume_message
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "block.img"
    backing.write_bytes(b"\xee" * (2 * SIZE))  # stale data that must not show through the disk's holes
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


@pytest.mark.parametrize(("name", "member"), [("disk.raw.gz", MEMBER), ("single.raw.gz", BLOCK)])
def test_block_volume_import_killed_at_a_random_point_resumes_from_the_devices_tail_record(
        name: str, member: int, loop_device: Path, tmp_path: Path, server: NginxServer, image_dir: Path) -> None:
    volume = Volume(tmp_path)
    wire_size = (image_dir / name).stat().st_size
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}",
               "CDI_DATA_PATH": str(loop_device)}
        device = DeviceTailStore(loop_device, 2 * SIZE)
        kill_part_way(volume, env, relay, int(wire_size * random.uniform(0.25, 0.85)),
                      caught_up=recorded_within(device.load, INTERVAL + READ + member))
        record = device.load()
        assert record is not None and record.wire_offset > 0
        assert record.decoder_state or name != "single.raw.gz"  # inside its only member
        relay.reset()
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert relay.downstream <= wire_size - record.wire_offset + SLACK
    with loop_device.open("rb") as device:
        assert device.read(SIZE) == (image_dir / "disk.raw").read_bytes()
        tail = device.read()
    assert b"PYCDICKP" not in tail and DeviceTailStore(loop_device, 2 * SIZE).load() is None
    assert tail.strip(b"\xee").strip(b"\0") == b""  # stale bytes past the disk, and our slots zeroed


def test_killed_twice_resumes_twice(volume: Volume, server: NginxServer, image_dir: Path) -> None:
    wire_size = (image_dir / "disk.raw.xz").stat().st_size
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/disk.raw.xz"}
        store = CheckpointStore.beside(volume.data)
        kill_part_way(volume, env, relay, wire_size // 3, caught_up=recorded_within(store.load, INTERVAL + READ + MEMBER))
        first = store.load()
        assert first is not None
        relay.reset()
        kill_part_way(volume, env, relay, (wire_size - first.wire_offset) // 2,
                      caught_up=recorded_within(store.load, INTERVAL + READ + MEMBER, start=first.wire_offset,
                                                beyond=first.wire_offset))
        second = store.load()
        assert first is not None and second is not None and second.wire_offset > first.wire_offset
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed" and message.resume_message is not None
    assert f"at source byte {second.wire_offset} " in message.resume_message
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()


def test_a_connection_cut_keeps_the_checkpoint_for_the_restart(volume: Volume, server: NginxServer,
                                                                image_dir: Path) -> None:
    """A retryable failure (the source broke off) exits 1 but keeps the partial disk and its record."""
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/disk.raw.gz"}
        relay.cut_after = (image_dir / "disk.raw.gz").stat().st_size // 2
        code, message, log = volume.run(env)
        assert code == 1 and message.reason == "ImagePullFailed", log
        assert (volume.data / PARTIAL_NAME).exists()
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()


def test_an_s3_object_replaced_between_attempts_starts_over_and_says_so(volume: Volume, s3: MotoS3,
                                                                         image_dir: Path, tmp_path: Path) -> None:
    s3.upload("resume", "changing.raw", image_dir / "disk.raw")
    port = int(s3.http_url.rsplit(":", 1)[1])
    new = bytes(reversed((image_dir / "disk.raw").read_bytes()))
    with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/resume/changing.raw",
               "IMPORTER_ACCESS_KEY_ID": "test-access", "IMPORTER_SECRET_KEY": "test-secret"}
        kill_part_way(volume, env, relay, SIZE // 2)
        (tmp_path / "new.raw").write_bytes(new)
        s3.upload("resume", "changing.raw", tmp_path / "new.raw")
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "etag changed" in message.resume_message
    assert disk_bytes(volume, SIZE + 1) == new


@pytest.mark.parametrize("name", ["disk.raw", "single.raw.gz"])
def test_an_importer_stopped_by_sigterm_keeps_its_checkpoint_and_the_next_pod_resumes(
        name: str, volume: Volume, server: NginxServer, image_dir: Path) -> None:
    """A pod deleted or evicted (its node drained) gets SIGTERM: the importer stops, and its record and
    partial disk stay for the pod that replaces it, as after a SIGKILL."""
    wire_size = (image_dir / name).stat().st_size
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/{name}"}
        store = CheckpointStore.beside(volume.data)
        log = kill_part_way(volume, env, relay, wire_size // 2, signum=signal.SIGTERM,
                            caught_up=recorded_within(store.load, INTERVAL + READ + BLOCK))
        assert "SIGTERM received: stopping" in log
        record = store.load()
        assert record is not None and record.wire_offset > 0, log
        code, message, run_log = volume.run(env)
    assert code == 0, run_log
    assert message.resume_decision == "Resumed", message
    assert disk_bytes(volume, SIZE + 1) == (image_dir / "disk.raw").read_bytes()
    assert relay.downstream <= wire_size + INTERVAL + READ + BLOCK + SLACK
