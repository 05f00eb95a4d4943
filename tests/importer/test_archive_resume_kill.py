"""A killed archive import resumes: the real `cdi-importer` (content type `archive`) is SIGKILLed part
way through a tar or tar.gz of several files (a large file spanning many checkpoint intervals, small
files before and after it, a directory tree, a symlink, a hard link, assorted modes), restarted on the
same volume, and must leave the same tree as an import that was never killed (contents, modes,
symlinks; no staging directory, no checkpoint), while fetching in total no more than the archive plus
the lag its last record had behind the kill point (at most one checkpoint interval, one 1 MiB read
and, for tar.gz, one DEFLATE block: `LAG`), with a ranged request. Sources: nginx, moto's S3 and the
GCS emulator, behind the throttling relay of `test_resume_kill` (its helpers are reused). A `../`
member after the kill point is still refused after the resume, and a source that changed between the
attempts starts over and says so.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.archive import STAGING_NAME
from importer.archivestate import ArchiveState
from importer.checkpoint import CheckpointStore
from tests.importer.test_resume_kill import (
    BLOCK,
    INTERVAL,
    RATE,
    READ,
    SLACK,
    Volume,
    kill_part_way,
    recorded_within,
)
from tests.support.gcs import GcsEmulator
from tests.support.nginx import NginxServer
from tests.support.s3 import MotoS3
from tests.support.shaper import ShapedRelay
from tests.support.tls import TestPKI

MiB = 1 << 20
LAG = INTERVAL + READ + BLOCK  # how far a record may trail the kill point (see the module docstring)
BIG = 6 * MiB

Tree = dict[str, tuple[str, int, bytes]]  # path -> (kind, mode, content or link target)


def _small(prefix: str, count: int, rng: random.Random) -> list[tuple[str, int, bytes]]:
    return [(f"{prefix}/f{i:03}.bin", 0o644 if i % 3 else 0o600, rng.randbytes(rng.randrange(1, 40 << 10)))
            for i in range(count)]


def _big(rng: random.Random) -> bytes:
    """Random 128 KiB blocks and runs of zeros (a disk image inside the tar)."""
    return b"".join(rng.randbytes(128 << 10) if rng.random() < 0.6 else bytes(128 << 10)
                    for _ in range(BIG // (128 << 10)))


def build_tar(seed: int, tail: list[tarfile.TarInfo] | None = None) -> tuple[bytes, Tree]:
    """The archive and the tree it extracts to; `tail`: members appended after everything else."""
    rng = random.Random(seed)
    out = io.BytesIO()
    tree: Tree = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 1_700_000_000, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
            tree[name] = ("dir", mode, b"") if kind == tarfile.DIRTYPE else ("link", 0, link.encode()) \
                if kind == tarfile.SYMTYPE else ("file", mode, data)
        for directory in ("tree", "tree/a", "tree/a/b", "tree/small"):
            add(directory, tarfile.DIRTYPE, 0o755)
        add("tree/a/b/c.txt", tarfile.REGTYPE, 0o640, b"deep in the tree\n")
        for name, mode, data in _small("tree/small", 60, rng):
            add(name, tarfile.REGTYPE, mode, data)
        add("disk.img", tarfile.REGTYPE, 0o644, _big(rng))
        add("run.sh", tarfile.REGTYPE, 0o755, b"#!/bin/sh\necho hi\n")
        add("tree/late", tarfile.DIRTYPE, 0o750)
        for name, mode, data in _small("tree/late", 60, rng):
            add(name, tarfile.REGTYPE, mode, data)
        add("link-to-c", tarfile.SYMTYPE, 0o777, link="tree/a/b/c.txt")
        add("tree/a/hard", tarfile.LNKTYPE, 0o640, link="tree/a/b/c.txt")
        tree["tree/a/hard"] = tree["tree/a/b/c.txt"]
        for info in tail or []:
            archive.addfile(info, io.BytesIO(b"x" * info.size))
    return out.getvalue(), tree


def extracted(data: Path) -> Tree:
    tree: Tree = {}
    for path in sorted(data.rglob("*")):
        name = path.relative_to(data).as_posix()
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            tree[name] = ("link", 0, str(path.readlink()).encode())
        elif stat.S_ISDIR(st.st_mode):
            tree[name] = ("dir", stat.S_IMODE(st.st_mode), b"")
        else:
            tree[name] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return tree


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tree]:
    directory = tmp_path_factory.mktemp("archive-resume")
    data, tree = build_tar(7)
    (directory / "files.tar").write_bytes(data)
    (directory / "files.tar.gz").write_bytes(gzip.compress(data, 6))
    return directory, tree


@pytest.fixture(scope="module")
def server(archives: tuple[Path, Tree], pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[NginxServer]:
    with NginxServer(archives[0], tmp_path_factory.mktemp("nginx-archive"), pki) as nginx:
        yield nginx


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    vol = Volume(tmp_path)
    vol.data.mkdir()
    return vol


def resume_after_kill(volume: Volume, env: dict[str, str], relay: ShapedRelay, wire_size: int,
                      at: int) -> tuple[str, int, ArchiveState, str]:
    """Kill at wire byte `at` once a record is within LAG of it, run again; (resume message, bytes
    fetched in total, the record's mark, the second run's log)."""
    relay.reset()
    store = CheckpointStore.beside(volume.data)
    kill_part_way(volume, env, relay, at, caught_up=recorded_within(store.load, LAG))
    record = store.load()
    assert record is not None and 0 < record.wire_offset <= at and record.archive_state, record
    assert (volume.data / STAGING_NAME).is_dir()
    code, message, log = volume.run(env)
    assert code == 0, log
    assert message.message == "Import Complete"
    assert message.resume_decision == "Resumed", message
    assert message.resume_message is not None
    assert not (volume.data / STAGING_NAME).exists() and not store.path.exists()
    return message.resume_message, relay.downstream, ArchiveState.from_json(record.archive_state), log


def _env(url: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, "IMPORTER_CONTENTTYPE": "archive"}


@pytest.mark.parametrize("name", ["files.tar", "files.tar.gz"])
@pytest.mark.parametrize("where", [(0.15, 0.3), (0.35, 0.75), (0.85, 0.95)], ids=["early", "big-file", "late"])
def test_http_archive_import_killed_at_a_random_point_resumes_to_the_same_tree(
        name: str, where: tuple[float, float], volume: Volume, server: NginxServer,
        archives: tuple[Path, Tree]) -> None:
    directory, tree = archives
    wire_size = (directory / name).stat().st_size
    at = int(wire_size * random.uniform(*where))
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        said, fetched, mark, log = resume_after_kill(
            volume, _env(f"http://127.0.0.1:{relay.port}/{name}"), relay, wire_size, at)
    assert said.startswith("Resumed the import after a restart at source byte"), said
    assert f"continuing the archive at tar byte {mark.tar_offset}" in log, log
    assert extracted(volume.data) == tree
    assert fetched <= wire_size + LAG + SLACK, (fetched, wire_size)
    ranged = [line for line in server.access_log_lines() if f"/{name} " in line and '"bytes=' in line]
    assert ranged and " 206 " in ranged[-1], ranged


def test_a_record_inside_the_large_file_truncates_it_and_goes_on(volume: Volume, server: NginxServer,
                                                                  archives: tuple[Path, Tree]) -> None:
    directory, tree = archives
    wire_size = (directory / "files.tar").stat().st_size
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        _, _, mark, log = resume_after_kill(volume, _env(f"http://127.0.0.1:{relay.port}/files.tar"), relay,
                                            wire_size, int(wire_size * 0.5))
    assert mark.file == "disk.img" and 0 < mark.file_written < mark.file_size, mark
    assert f"'disk.img' has {mark.file_written} of {BIG} bytes" in log
    assert extracted(volume.data) == tree


def test_s3_archive_import_killed_at_a_random_point_resumes_to_the_same_tree(
        volume: Volume, archives: tuple[Path, Tree]) -> None:
    directory, tree = archives
    with MotoS3() as s3:
        s3.upload("archives", "files.tar.gz", directory / "files.tar.gz")
        wire_size = (directory / "files.tar.gz").stat().st_size
        port = int(s3.http_url.rsplit(":", 1)[1])
        with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
            env = {"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": f"http://127.0.0.1:{relay.port}/archives/files.tar.gz",
                   "IMPORTER_ACCESS_KEY_ID": "test-access", "IMPORTER_SECRET_KEY": "test-secret",
                   "IMPORTER_CONTENTTYPE": "archive"}
            said, fetched, _, _ = resume_after_kill(volume, env, relay, wire_size,
                                                    int(wire_size * random.uniform(0.25, 0.85)))
    assert said.startswith("Resumed the import after a restart"), said
    assert extracted(volume.data) == tree
    assert fetched <= wire_size + LAG + SLACK, (fetched, wire_size)


def test_gcs_archive_import_killed_at_a_random_point_resumes_to_the_same_tree(
        volume: Volume, archives: tuple[Path, Tree], tmp_path_factory: pytest.TempPathFactory) -> None:
    directory, tree = archives
    with GcsEmulator(tmp_path_factory.mktemp("gcs-archive")) as gcs:
        gcs.bucket("archives")
        gcs.upload("archives", "files.tar", directory / "files.tar")
        wire_size = (directory / "files.tar").stat().st_size
        port = int(gcs.url.rsplit(":", 1)[1])
        with ShapedRelay("127.0.0.1", port, rate=RATE) as relay:
            env = {"IMPORTER_SOURCE": "gcs", "IMPORTER_ENDPOINT": "gs://archives/files.tar",
                   "STORAGE_EMULATOR_HOST": f"127.0.0.1:{relay.port}", "IMPORTER_CONTENTTYPE": "archive"}
            said, fetched, _, _ = resume_after_kill(volume, env, relay, wire_size,
                                                    int(wire_size * random.uniform(0.25, 0.85)))
    assert said.startswith("Resumed the import after a restart"), said
    assert extracted(volume.data) == tree
    assert fetched <= wire_size + LAG + SLACK, (fetched, wire_size)


def test_a_hostile_member_after_the_kill_point_is_still_refused(volume: Volume, server: NginxServer,
                                                                archives: tuple[Path, Tree]) -> None:
    escape = tarfile.TarInfo("../escaped-after-resume")
    escape.size = 10
    data, _ = build_tar(7, tail=[escape])
    path = archives[0] / "hostile.tar"
    path.write_bytes(data)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = _env(f"http://127.0.0.1:{relay.port}/hostile.tar")
        store = CheckpointStore.beside(volume.data)
        kill_part_way(volume, env, relay, len(data) // 2, caught_up=recorded_within(store.load, LAG))
        record = store.load()
        assert record is not None and record.archive_state
        code, message, log = volume.run(env)
    assert code == 1, log
    assert message.reason == "UnsafeArchive", message
    assert "escapes the target directory" in message.message, message
    assert message.resume_decision == "Resumed", message
    assert not (volume.root / "escaped-after-resume").exists()
    assert not (volume.data / STAGING_NAME).exists()
    assert not (volume.data / "disk.img").exists() and not (volume.data / "tree").exists()


def test_an_archive_that_changed_between_attempts_starts_over_and_says_so(
        volume: Volume, server: NginxServer, archives: tuple[Path, Tree]) -> None:
    path = archives[0] / "changing.tar"
    first, _ = build_tar(7)
    path.write_bytes(first)
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=RATE) as relay:
        env = _env(f"http://127.0.0.1:{relay.port}/changing.tar")
        store = CheckpointStore.beside(volume.data)
        kill_part_way(volume, env, relay, len(first) // 2, caught_up=recorded_within(store.load, LAG))
        second, tree = build_tar(8)
        path.write_bytes(second)
        os.utime(path, (time.time() + 5, time.time() + 5))  # a new Last-Modified, hence a new ETag
        code, message, log = volume.run(env)
    assert code == 0, log
    assert message.resume_decision == "StartedOver", message
    assert message.resume_message is not None and "the source changed since the checkpoint" in message.resume_message
    assert extracted(volume.data) == tree
    assert not (volume.data / STAGING_NAME).exists()
