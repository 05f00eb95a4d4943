"""A killed registry import resumes inside the disk's layer: the real `cdi-importer` pulls a container
disk from a real `docker-registry` through a counting relay (`tests.support.shaper`), is SIGKILLed at a
random point while the disk streams, and is restarted on the same volume. The restart resolves the tag
again (same manifest digest), reads the layers above the disk's again, fetches the disk's layer blob
from the record's restart point with a Range request (gzip state and blob hash restored), and must
produce a byte-identical disk while fetching in total no more than the image plus one checkpoint
interval, one restart-point spacing and the read in flight. A tag moved to another image, or a record
whose saved restart point is damaged, starts over and says why; qcow2 disks and oci-archive images are
not checkpointed and say so. Filesystem and Block volumes (a loop device, as the HTTP kill tests)."""

from __future__ import annotations

import asyncio
import gzip
import random
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from importer.checkpoint import Checkpoint, CheckpointCorrupt, CheckpointStore, SourceIdentity
from importer.checkpointdevice import DeviceTailStore
from importer.config import load_config
from importer.sources.base import SourceStream
from importer.sources.registry.restart import decode
from importer.sources.registry.source import ARCHIVE_NOT_RESUMED, RegistrySource
from tests.importer.test_resume_kill import Volume, kill_part_way, loop_device
from tests.registry import images as oci
from tests.registry.conftest import Catalog
from tests.support.registry import RegistryServer
from tests.support.shaper import ShapedRelay

__all__ = ["loop_device"]  # the Block volume fixture, reused as is

MiB = 1 << 20
SIZE = 8 * MiB
INTERVAL = MiB // 2  # the tests' CDI_CHECKPOINT_INTERVAL (test_resume_kill's)
SPACING = 256 << 10  # restart points: an eighth of the interval, at least 256 KiB
READ = MiB
BLOCK = 64 << 10  # a DEFLATE block (gzip -1 writes ~17 KiB ones) and an input read
SLACK = 128 << 10  # response heads, manifests, configs, the small layers read again
RATE = 12 * MiB


def _disk() -> bytes:
    rng = random.Random(27)
    return b"".join(rng.randbytes(128 << 10) if rng.random() < 0.6 else bytes(128 << 10)
                    for _ in range(SIZE // (128 << 10)))


@dataclass(frozen=True)
class Pushed:
    disk: bytes
    images: dict[str, oci.Image]  # by "repository:tag"

    def wire(self, name: str) -> int:
        image = self.images[name]
        return sum(b.size for b in image.blobs) + image.manifest.size


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    disk = _disk()
    work = tmp_path_factory.mktemp("registry-resume")
    (work / "disk.raw").write_bytes(disk)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "disk.raw"),
                    str(work / "disk.qcow2")], check=True)
    pusher = oci.Pusher(registry.base_url)
    top = oci.layer({"etc/motd": b"hello\n"}, directories=("etc/",))
    stale = oci.layer({"disk/old.img": b"\xaa" * 4096})
    images = {
        "resume/raw:gzip": oci.image([oci.layer({"disk/disk.img": disk})]),
        "resume/raw:plain": oci.image([oci.layer({"disk/disk.img": disk}, compression=None)]),
        # the disk's layer is not the first read: a top layer above it, a whited-out stale disk below
        "resume/stacked:latest": oci.image([stale, oci.layer({"disk/.wh.old.img": b"", "disk/disk.img": disk}), top]),
        "resume/rawgz:latest": oci.image([oci.layer({"disk/disk.raw.gz": gzip.compress(disk, 1)})]),
        "resume/qcow2:latest": oci.image([oci.layer({"disk/disk.qcow2": work / "disk.qcow2"})]),
        "resume/moving:latest": oci.image([oci.layer({"disk/disk.img": disk})]),
        "resume/moving:other": oci.image([oci.layer({"disk/disk.img": bytes(reversed(disk))})]),
    }
    for name, image in images.items():
        repository, tag = name.split(":")
        pusher.image(repository, tag, image)
    return Pushed(disk, images)


def _env(relay: ShapedRelay, name: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "registry", "IMPORTER_ENDPOINT": f"docker://127.0.0.1:{relay.port}/{name}",
            "INSECURE_TLS": "true", **extra}


def _caught_up(load: Callable[[], Checkpoint | None], lag: int) -> Callable[[int], bool]:
    """Whether the last record's restart point is within `lag` blob bytes of the relay's hold."""
    def caught_up(held: int) -> bool:
        try:
            record = load()
        except CheckpointCorrupt:
            return False
        if record is None or not record.source_state:
            return False
        return decode(record.source_state).blob_offset >= held - lag
    return caught_up


def _kill(volume: Volume, env: dict[str, str], relay: ShapedRelay, load: Callable[[], Checkpoint | None],
          wire: int) -> Checkpoint:
    kill_part_way(volume, env, relay, int(wire * random.uniform(0.3, 0.85)),
                  caught_up=_caught_up(load, INTERVAL + SPACING + READ + SLACK))
    record = load()
    assert record is not None and record.wire_offset > 0 and record.source_state
    return record


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    vol = Volume(tmp_path)
    vol.data.mkdir()
    return vol


def _disk_bytes(path: Path, length: int) -> bytes:
    with path.open("rb") as disk:
        return disk.read(length)


@pytest.mark.parametrize("name", ["resume/raw:gzip", "resume/raw:plain", "resume/stacked:latest",
                                  "resume/rawgz:latest"])
def test_a_registry_import_killed_at_a_random_point_resumes_byte_identical(
        name: str, volume: Volume, registry: RegistryServer, pushed: Pushed) -> None:
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, name)
        record = _kill(volume, env, relay, store.load, pushed.wire(name))
        point = decode(record.source_state)
        assert point.disk_offset <= record.wire_offset
        assert point.compression == (None if name.endswith(":plain") else "gz")
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert f"at source byte {record.wire_offset} " in (message.resume_message or "")
    assert f"(blob byte {point.blob_offset})" in log  # the disk's layer was fetched from the point on
    assert _disk_bytes(volume.data / "disk.img", SIZE + 1) == pushed.disk
    assert not store.path.exists()
    assert relay.downstream <= pushed.wire(name) + INTERVAL + SPACING + READ + BLOCK + SLACK, relay.downstream


def test_a_tag_moved_to_another_image_between_attempts_starts_over_and_says_so(
        volume: Volume, registry: RegistryServer, pushed: Pushed) -> None:
    pusher = oci.Pusher(registry.base_url)
    pusher.manifest("resume/moving", "latest", pushed.images["resume/moving:latest"].manifest)
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, "resume/moving:latest")
        _kill(volume, env, relay, store.load, pushed.wire("resume/moving:latest"))
        moved = pushed.images["resume/moving:other"].manifest
        pusher.manifest("resume/moving", "latest", moved)
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None
    assert "the source changed since the checkpoint" in message.resume_message
    assert f"now names manifest {moved.digest}" in message.resume_message
    assert _disk_bytes(volume.data / "disk.img", SIZE + 1) == bytes(reversed(pushed.disk))


def test_a_damaged_restart_point_starts_over_and_says_so(volume: Volume, registry: RegistryServer,
                                                        pushed: Pushed) -> None:
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, "resume/raw:gzip")
        record = _kill(volume, env, relay, store.load, pushed.wire("resume/raw:gzip"))
        state = bytearray(record.source_state)
        state[len(state) // 2] ^= 0x40  # inside the gzip window
        store.save(replace(record, source_state=bytes(state)))
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert "registry restart point is corrupt" in (message.resume_message or ""), message.resume_message
    assert _disk_bytes(volume.data / "disk.img", SIZE + 1) == pushed.disk


def test_a_qcow2_disk_in_a_registry_image_killed_at_a_random_point_resumes_from_the_kept_ranges(
        volume: Volume, registry: RegistryServer, pushed: Pushed) -> None:
    """A layer cannot serve the ranges a qcow2 restart reads again: they are kept beside the record."""
    name = "resume/qcow2:latest"
    store = CheckpointStore.beside(volume.data)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, name)
        record = _kill(volume, env, relay, store.load, pushed.wire(name))
        assert record.format == "qcow2" and record.not_resumable is None
        assert store.path.with_name(store.path.name + ".ranges").stat().st_size > 0
        point = decode(record.source_state)
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert f"(blob byte {point.blob_offset})" in log
    assert _disk_bytes(volume.data / "disk.img", SIZE + 1) == pushed.disk
    assert not store.path.exists() and not store.path.with_name(store.path.name + ".ranges").exists()
    assert relay.downstream <= pushed.wire(name) + INTERVAL + SPACING + READ + BLOCK + SLACK, relay.downstream


def test_a_qcow2_disk_onto_a_block_volume_without_scratch_is_not_checkpointed_and_a_restart_says_why(
        loop_device: Path, tmp_path: Path, registry: RegistryServer, pushed: Pushed) -> None:
    volume = Volume(tmp_path)
    name = "resume/qcow2:latest"
    device = DeviceTailStore(loop_device, 2 * SIZE)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, name, CDI_DATA_PATH=str(loop_device))
        kill_part_way(volume, env, relay, pushed.wire(name) // 2)
        record = device.load()
        assert record is not None and record.not_resumable is not None
        assert "qcow2 disk inside a registry image is not checkpointed onto a Block volume" in record.not_resumable
        relay.rate = None
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver"
    assert "qcow2 disk inside a registry image" in (message.resume_message or "")
    with loop_device.open("rb") as disk:
        assert disk.read(SIZE) == pushed.disk


def test_a_qcow2_disk_onto_a_block_volume_keeps_its_ranges_on_scratch_and_resumes(
        loop_device: Path, tmp_path: Path, registry: RegistryServer, pushed: Pushed) -> None:
    volume = Volume(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    name = "resume/qcow2:latest"
    device = DeviceTailStore(loop_device, 2 * SIZE)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, name, CDI_DATA_PATH=str(loop_device), CDI_SCRATCH_PATH=str(scratch))
        record = _kill(volume, env, relay, device.load, pushed.wire(name))
        assert record.format == "qcow2" and any(scratch.iterdir())
        point = decode(record.source_state)
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert f"(blob byte {point.blob_offset})" in log
    with loop_device.open("rb") as disk:
        assert disk.read(SIZE) == pushed.disk
    assert DeviceTailStore(loop_device, 2 * SIZE).load() is None and not any(scratch.iterdir())


@pytest.fixture
def block_volume(loop_device: Path, tmp_path: Path) -> Iterator[tuple[Volume, Path]]:
    yield Volume(tmp_path), loop_device


def test_a_block_volume_registry_import_killed_at_a_random_point_resumes_from_the_devices_tail_record(
        block_volume: tuple[Volume, Path], registry: RegistryServer, pushed: Pushed) -> None:
    volume, device_path = block_volume
    name = "resume/stacked:latest"
    device = DeviceTailStore(device_path, 2 * SIZE)
    with ShapedRelay("127.0.0.1", registry.port, rate=RATE) as relay:
        env = _env(relay, name, CDI_DATA_PATH=str(device_path))
        record = _kill(volume, env, relay, device.load, pushed.wire(name))
        point = decode(record.source_state)
        relay.reset()
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "Resumed", message
    assert f"(blob byte {point.blob_offset})" in log
    layer = pushed.images[name].layers[1]
    assert relay.downstream <= layer.size - point.blob_offset + SLACK, (relay.downstream, layer.size)
    with device_path.open("rb") as disk:
        assert disk.read(SIZE) == pushed.disk
        tail = disk.read()
    assert b"PYCDICKP" not in tail and DeviceTailStore(device_path, 2 * SIZE).load() is None
    assert tail.strip(b"\xee").strip(b"\0") == b""


def test_an_oci_archive_image_is_not_resumed_and_says_why(catalog: Catalog) -> None:
    """Its layers are read from a local file that names no version: the stream offers no restart points
    (the first record says so) and a restart reads it from the start, saying why."""
    config = load_config({"IMPORTER_SOURCE": "registry",
                          "IMPORTER_ENDPOINT": f"oci-archive:{catalog.layout_archive}:fedora"})

    async def opened() -> tuple[SourceStream, int]:
        source = RegistrySource(config)
        async with source.open_from(4096, SourceIdentity("x", digest="sha256:0"), b"state") as stream:
            return stream, sum([len(chunk) async for chunk in stream.chunks])

    stream, length = asyncio.run(opened())
    assert stream.start == 0 and stream.total == length
    assert stream.started_over == ARCHIVE_NOT_RESUMED and stream.identity is None
    assert stream.restart_points is not None and stream.restart_points.unavailable == ARCHIVE_NOT_RESUMED
