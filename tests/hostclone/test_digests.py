"""The clone's end-to-end digest and its negotiation (`cdi.contracts.clone_protocol`): BLAKE3 when both
peers know it, sha256 with a peer of an earlier build in either direction (that build itself, taken from
git and run as a real process, is the peer), a BLAKE3 digest that catches a lost or corrupted extent and
a digest of the wrong algorithm, and a BLAKE3 clone resumed after dropped connections. Results are the
bytes of the target compared with the source, the phase (exit codes) and the reason of a refusal."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import blake3
import pytest

from cdi.contracts import clone_protocol as cp
from importer.cloner.client import CloneClient, CloneRefused, client_context
from importer.cloner.extents import extents
from tests.hostclone.conftest import StartTarget
from tests.hostclone.support import CLIENT, SOURCE_SIZE, CountingRelay, MiB, cloner_env, data_bytes, sha256_of
from tests.hostclone.test_datapath import data_cuts, run_clone, source_dir
from tests.support.tls import ClientCert, TestPKI

# The last build before the digest was negotiated: it knows sha256 only, sends no "digests" and
# answers without State.digest.
EARLIER_BUILD = "014efc0dce9f0a1add3c558b36dd6bf7df17c676"
REPO = Path(__file__).resolve().parents[2]
OLD_BEGIN = {"virtualSize": SOURCE_SIZE, "sourceVolumeMode": "Filesystem", "contentType": "kubevirt",
             "digest": "sha256"}


@pytest.fixture(scope="module")
def earlier_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The earlier build's `cdi` and `importer` packages, from git, to run with PYTHONPATH."""
    present = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{EARLIER_BUILD}^{{commit}}"],
                             capture_output=True, check=False)
    if present.returncode != 0:  # a shallow or exported checkout: the peer of record cannot be rebuilt
        pytest.skip(f"the earlier build {EARLIER_BUILD[:7]} is not in this checkout's history")
    root = tmp_path_factory.mktemp("earlier-build")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", EARLIER_BUILD, "cdi", "importer"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def _earlier_env(root: Path, **env: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), **env}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int) -> None:
    for _ in range(600):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on port {port}")


def test_begin_requests_and_answers_negotiate_the_first_algorithm_both_know() -> None:
    assert cp.Begin(SOURCE_SIZE, cp.VolumeMode.FILESYSTEM).to_json() == OLD_BEGIN  # what earlier builds send
    assert cp.Begin.parse(OLD_BEGIN).negotiate() == "sha256"
    ours = cp.Begin(SOURCE_SIZE, cp.VolumeMode.FILESYSTEM, offers=cp.DIGESTS).to_json()
    assert ours == {**OLD_BEGIN, "digests": ["blake3", "sha256"]}  # "digest" stays what earlier servers require
    assert cp.Begin.parse(ours).negotiate() == "blake3"
    assert cp.Begin.parse(ours).negotiate(known=("sha256",)) == "sha256"
    with pytest.raises(ValueError, match="none of the digests md5 is supported"):
        cp.Begin.parse({**OLD_BEGIN, "digests": ["md5"]}).negotiate()
    # An earlier server's answer names no digest: sha256.
    assert cp.State.parse('{"virtualSize": 5, "next": 0, "received": 0, "done": false}').digest == "sha256"
    assert cp.State.parse(json.dumps(cp.State(5, 0, 0, False, "blake3").to_json())).digest == "blake3"
    # A restarted cloner rejoins its clone; a begin that cannot use the clone's algorithm does not.
    blake3_clone = cp.Begin.parse(ours)
    assert cp.Begin.parse(ours).joins(blake3_clone, "blake3")
    assert not cp.Begin.parse(OLD_BEGIN).joins(blake3_clone, "blake3")
    assert not cp.Begin.parse({**ours, "virtualSize": 1}).joins(blake3_clone, "blake3")


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_layout_digests_are_the_documented_constructions(algorithm: str) -> None:
    """sha256's is byte for byte the earlier builds' (they must agree with us); BLAKE3's as documented."""
    pieces = [(4096, b"first extent"), (8 * MiB, b"x" * 70000)]
    hash_of = {"sha256": lambda data: hashlib.sha256(data).digest(), "blake3": lambda data: blake3.blake3(data).digest()}
    domain = {"sha256": b"cdi-clone-v1", "blake3": b"cdi-clone-blake3-v1"}[algorithm]
    stream = domain + struct.pack(">Q", 64 * MiB)
    digest = cp.LayoutDigest(64 * MiB, algorithm)
    for offset, data in pieces:
        extent_hash = cp.data_hash(algorithm)
        extent_hash.update(data)
        assert extent_hash.digest() == hash_of[algorithm](data)
        digest.add(offset, len(data), extent_hash.digest())
        stream += struct.pack(">QQ", offset, len(data)) + hash_of[algorithm](data)
    assert digest.hexdigest() == hash_of[algorithm](stream).hex()


async def test_this_cloner_and_server_use_blake3(pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    source = source_dir(tmp_path)
    target = await clone_target()
    report = await run_clone(cloner_env(pki, clone_cert, target.port, source))
    assert (await target.result()).exit_code == 0
    assert report.attempts == 1
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert "end-to-end digest: blake3" in caplog.text and "digest blake3" in caplog.text


async def test_a_cloner_of_the_earlier_build_clones_to_this_server_with_sha256(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path, earlier_build: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    source = source_dir(tmp_path)
    target = await clone_target()
    env = _earlier_env(earlier_build, **cloner_env(pki, clone_cert, target.port, source),
                       CDI_TERMINATION_LOG=str(tmp_path / "cloner-termination"))
    cloner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from importer.cloner.main import main; main()", env=env, cwd=earlier_build,
        stderr=asyncio.subprocess.PIPE)
    _out, err = await asyncio.wait_for(cloner.communicate(), 120)
    assert cloner.returncode == 0, err.decode()[-2000:]
    assert (await target.result()).exit_code == 0
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert "digest sha256" in caplog.text  # this server chose sha256 for the cloner that offered nothing else


async def test_this_cloner_clones_to_a_server_of_the_earlier_build_with_sha256(
        pki: TestPKI, clone_cert: ClientCert, tmp_path: Path, earlier_build: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    source = source_dir(tmp_path)
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    port = _free_port()
    env = _earlier_env(earlier_build, LISTEN_ADDRESS="127.0.0.1", LISTEN_PORT=str(port), CDI_DATA_PATH=str(data),
                       CDI_SCRATCH_PATH=str(scratch), CDI_TERMINATION_LOG=str(tmp_path / "server-termination"),
                       TLS_CERT_FILE=str(pki.server_cert), TLS_KEY_FILE=str(pki.server_key),
                       CLIENT_CERT_FILE=str(pki.ca_cert), CLIENT_NAME=CLIENT, FILESYSTEM_OVERHEAD="0")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from importer.uploadserver.main import main; main()", env=env, cwd=earlier_build,
        stderr=asyncio.subprocess.PIPE)
    try:
        await _wait_port(port)
        report = await run_clone(cloner_env(pki, clone_cert, port, source))
        _out, err = await asyncio.wait_for(server.communicate(), 60)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert server.returncode == 0, err.decode()[-2000:]
    assert b"clone complete" in err and report.attempts == 1
    assert sha256_of(data / "disk.img", SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert "end-to-end digest: sha256" in caplog.text and "blake3" not in caplog.text


@pytest.mark.parametrize("tamper", ["lost", "corrupted", "sha256-claimed"])
async def test_a_blake3_digest_catches_a_lost_or_corrupted_extent_and_the_wrong_algorithm(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path, tamper: str) -> None:
    source = source_dir(tmp_path)
    target = await clone_target()
    fd = os.open(source / "disk.img", os.O_RDONLY)
    try:
        sent = list(extents(fd, SOURCE_SIZE))
    finally:
        os.close(fd)
    claimed = cp.LayoutDigest(SOURCE_SIZE, "sha256" if tamper == "sha256-claimed" else "blake3")
    for extent in sent:
        extent_hash = cp.data_hash(claimed.algorithm)
        extent_hash.update(extent.data)
        claimed.add(extent.offset, len(extent.data), extent_hash.digest())
    context = client_context(clone_cert.cert.read_text(), clone_cert.key.read_text(), pki.ca_cert.read_text())
    async with CloneClient(f"https://127.0.0.1:{target.port}", context) as client:
        state = await client.begin(cp.Begin(SOURCE_SIZE, cp.VolumeMode.FILESYSTEM, offers=("blake3",)))
        assert state.digest == "blake3"
        for index, extent in enumerate(sent):
            if index == 1 and tamper == "lost":
                continue
            await client.put(extent.offset, extent.data[:-1] + b"?" if index == 1 and tamper == "corrupted"
                             else extent.data)
        with pytest.raises(CloneRefused) as refused:
            await client.finish(claimed.hexdigest())
    assert refused.value.reason == "CloneDigestMismatch" and refused.value.retryable
    assert target.written() == []  # nothing committed, the partial disk removed


async def test_a_blake3_clone_resumes_after_dropped_connections(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    source = source_dir(tmp_path)
    target = await clone_target()
    relay = CountingRelay("127.0.0.1", target.port, budgets=data_cuts(5 * MiB, 3 * MiB))
    await relay.start()
    try:
        report = await run_clone(cloner_env(pki, clone_cert, relay.port, source))
    finally:
        await relay.close()
    assert (await target.result()).exit_code == 0
    assert relay.cuts == 2 and report.attempts == 3
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert "digest blake3" in caplog.text and "sha256" not in caplog.text
    assert report.wire_bytes <= report.data_bytes + 2 * 2 * cp.EXTENT_ALIGN  # resumed, never from zero
    assert report.data_bytes >= data_bytes()
