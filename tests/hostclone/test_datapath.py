"""The cloner against a real upload server in clone-target mode, over mutual TLS on loopback: every
volume-mode pairing, a larger target, a smaller one, the wrong client certificate, dropped connections
(resumed, not restarted: bytes counted), a restarted cloner, and a lost or misplaced extent caught by
the digest. Bytes are compared over the source's whole size; sparseness by allocated blocks."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import pytest

from cdi.contracts import clone_protocol as cp
from cdi.contracts.metrics import TRANSFER_BYTES_DONE, TRANSFER_BYTES_TOTAL, parse_bytes
from cdi.contracts.termination import TerminationMessage
from importer.cloner.client import CloneClient, CloneRefused, client_context
from importer.cloner.config import load_config
from importer.cloner.extents import extents
from importer.cloner.main import CloneMetricsServer, _context, clone
from importer.cloner.sender import CloneReport, Sender
from importer.errors import ConfigurationError, TransferInterrupted
from importer.progress import Progress
from tests.hostclone.conftest import StartTarget
from tests.hostclone.support import (
    LAYOUT,
    SOURCE_SIZE,
    CountingRelay,
    MiB,
    allocated,
    cloner_env,
    data_bytes,
    loop_device,
    read_only_loop,
    sha256_of,
    write_layout,
)
from tests.support.tls import ClientCert, TestPKI


async def run_clone(env: dict[str, str], progress: Progress | None = None) -> CloneReport:
    config = load_config(env)
    return await clone(config, progress or Progress(), _context(config))


def only_data(wire_bytes: int) -> bool:
    """Every data byte sent, and nothing else but the zeros sharing a detection block with data."""
    return data_bytes() <= wire_bytes <= data_bytes() + 2 * cp.ZERO_BLOCK * len(LAYOUT)


def source_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "source"
    directory.mkdir()
    write_layout(directory / "disk.img")
    return directory


async def test_filesystem_to_larger_filesystem_sends_only_data(pki: TestPKI, clone_cert: ClientCert,
                                                               clone_target: StartTarget, tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    target = await clone_target(UPLOAD_IMAGE_SIZE="64Mi")
    progress = Progress()
    report = await run_clone(cloner_env(pki, clone_cert, target.port, source), progress)
    result = await target.result()
    assert result.exit_code == 0 and result.message is not None and result.message.message == "Clone Complete"
    disk = target.disk
    assert disk.stat().st_size == 64 * MiB  # grown to the target's usable space, as an imported raw image
    assert sha256_of(disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    with disk.open("rb") as f:
        f.seek(SOURCE_SIZE)
        assert f.read() == bytes(24 * MiB)
    assert only_data(report.wire_bytes)  # the zero-filled 2 MiB and every hole stayed home
    assert allocated(disk) <= data_bytes() + 2 * MiB
    assert progress.percent == 100.0


@pytest.mark.parametrize("prealloc", ["true"])
async def test_preallocation_is_honoured(pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget,
                                         tmp_path: Path, prealloc: str) -> None:
    source = source_dir(tmp_path)
    target = await clone_target(UPLOAD_IMAGE_SIZE="48Mi", PREALLOCATION=prealloc)
    await run_clone(cloner_env(pki, clone_cert, target.port, source))
    result = await target.result()
    assert result.message is not None and result.message.preallocation_applied is True
    assert allocated(target.disk) >= 48 * MiB
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)


async def test_filesystem_to_block_zeroes_the_holes(pki: TestPKI, clone_cert: ClientCert,
                                                    clone_target: StartTarget, tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    with loop_device(tmp_path / "target.img", 48 * MiB) as device:
        target = await clone_target(CDI_DATA_PATH=str(device))
        report = await run_clone(cloner_env(pki, clone_cert, target.port, source))
        assert (await target.result()).exit_code == 0
        assert sha256_of(device, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert only_data(report.wire_bytes)


async def test_block_to_filesystem_and_block_to_block(pki: TestPKI, clone_cert: ClientCert,
                                                      clone_target: StartTarget, tmp_path: Path) -> None:
    backing = tmp_path / "source.img"
    write_layout(backing)
    expected = sha256_of(backing, SOURCE_SIZE)
    with loop_device(tmp_path / "t.img", 40 * MiB) as target_device, read_only_loop(backing) as device:
        to_file = await clone_target(UPLOAD_IMAGE_SIZE="40Mi")
        report = await run_clone(cloner_env(pki, clone_cert, to_file.port, device, block=True))
        assert (await to_file.result()).exit_code == 0
        assert sha256_of(to_file.disk, SOURCE_SIZE) == expected
        assert only_data(report.wire_bytes)  # zero detection on a device that cannot SEEK_DATA
        assert allocated(to_file.disk) <= data_bytes() + 2 * MiB
        to_device = await clone_target(CDI_DATA_PATH=str(target_device))
        await run_clone(cloner_env(pki, clone_cert, to_device.port, device, block=True))
        assert (await to_device.result()).exit_code == 0
        assert sha256_of(target_device, SOURCE_SIZE) == expected


async def test_smaller_block_target_is_refused(pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget,
                                               tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    with loop_device(tmp_path / "small.img", 32 * MiB) as device:
        target = await clone_target(CDI_DATA_PATH=str(device))
        with pytest.raises(CloneRefused) as refused:
            await run_clone(cloner_env(pki, clone_cert, target.port, source))
    assert refused.value.reason == "ImageTooLarge"
    assert "smaller than the clone source" in refused.value.message


async def test_wrong_client_certificate_is_refused(pki: TestPKI, proxy_cert: ClientCert,
                                                   clone_target: StartTarget, tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    target = await clone_target()
    with pytest.raises(CloneRefused) as refused:
        await run_clone(cloner_env(pki, proxy_cert, target.port, source))
    assert refused.value.reason == "CloneUnauthorized"
    assert target.written() == []


async def test_a_cloner_without_the_upgrade_clones_over_the_ordinary_route(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    """An older cloner of this release never asks for the upgraded connection: the PUT route still works."""
    source = source_dir(tmp_path)
    target = await clone_target()
    relay = CountingRelay("127.0.0.1", target.port, budgets=[6 * MiB])  # one connection for everything
    await relay.start()
    config = load_config(cloner_env(pki, clone_cert, relay.port, source))
    fd = os.open(config.source, os.O_RDONLY)
    try:
        async with CloneClient(config.base_url, _context(config), upgrade=False) as client:
            report = await Sender(client, fd, SOURCE_SIZE, cp.VolumeMode.FILESYSTEM, Progress()).run()
    finally:
        os.close(fd)
        await relay.close()
    assert (await target.result()).exit_code == 0
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert relay.cuts == 1 and report.attempts == 2 and only_data(report.data_bytes)


def data_cuts(*budgets: int) -> list[int]:
    """Relay budgets for attempts that each open the control connection (begin, state, finish: never
    cut) and then the upgraded extent connection (cut after the budget)."""
    return [budget for data in budgets for budget in (1 << 40, data)]


async def test_dropped_connections_resume_without_resending_from_zero(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    target = await clone_target()
    budgets = data_cuts(6 * MiB, 5 * MiB, 3 * MiB)  # each extent connection is cut after this many bytes
    relay = CountingRelay("127.0.0.1", target.port, budgets=budgets)
    await relay.start()
    try:
        report = await run_clone(cloner_env(pki, clone_cert, relay.port, source))
    finally:
        await relay.close()
    assert (await target.result()).exit_code == 0
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert relay.cuts == 3 and report.attempts == 4
    # Each cut costs at most the two extents in flight (the one being written, the one queued behind it),
    # never what was already acknowledged.
    assert report.wire_bytes <= report.data_bytes + 3 * 2 * cp.EXTENT_ALIGN
    assert relay.received <= data_bytes() * 1.02 + 3 * 2 * cp.EXTENT_ALIGN
    assert relay.received < 2 * data_bytes()  # starting over even once would have sent it all twice


async def test_restarted_cloner_resumes_from_the_acknowledged_offset(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    source = source_dir(tmp_path)
    target = await clone_target()
    relay = CountingRelay("127.0.0.1", target.port, budgets=data_cuts(9 * MiB))
    await relay.start()
    env = cloner_env(pki, clone_cert, relay.port, source)
    config = load_config(env)
    context = _context(config)
    fd = os.open(config.source, os.O_RDONLY)
    try:
        async with CloneClient(config.base_url, context) as client:
            with pytest.raises(TransferInterrupted):
                await Sender(client, fd, SOURCE_SIZE, cp.VolumeMode.FILESYSTEM, Progress(), max_failures=0).run()
        first = client.sent
        async with CloneClient(f"https://127.0.0.1:{target.port}", context) as probe:
            acknowledged = (await probe.state()).received
        report = await run_clone(env)  # a new cloner process, as after the pod restarted
    finally:
        os.close(fd)
        await relay.close()
    assert (await target.result()).exit_code == 0
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)
    assert acknowledged >= 4 * MiB
    assert report.wire_bytes == report.data_bytes - acknowledged  # nothing acknowledged was sent again
    assert first + report.wire_bytes <= report.data_bytes + 2 * cp.EXTENT_ALIGN  # what was in flight, twice


async def _protocol_client(pki: TestPKI, cert: ClientCert, port: int) -> tuple[CloneClient, ssl.SSLContext]:
    context = client_context(cert.cert.read_text(), cert.key.read_text(), pki.ca_cert.read_text())
    return CloneClient(f"https://127.0.0.1:{port}", context), context


@pytest.mark.parametrize("tamper", ["lost", "misplaced", "corrupted"])
async def test_digest_catches_a_lost_misplaced_or_corrupted_extent(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path, tamper: str) -> None:
    source = source_dir(tmp_path)
    target = await clone_target()
    fd = os.open(source / "disk.img", os.O_RDONLY)
    try:
        sent = list(extents(fd, SOURCE_SIZE))
    finally:
        os.close(fd)
    digest = cp.LayoutDigest(SOURCE_SIZE)
    for extent in sent:
        digest.add(extent.offset, len(extent.data), extent.sha256)
    client, _ = await _protocol_client(pki, clone_cert, target.port)
    async with client:
        await client.begin(cp.Begin(SOURCE_SIZE, cp.VolumeMode.FILESYSTEM))
        for index, extent in enumerate(sent):
            if index == 2 and tamper == "lost":
                continue
            offset = extent.offset + 4096 if index == 2 and tamper == "misplaced" else extent.offset
            data = (b"X" + extent.data[1:]) if index == 2 and tamper == "corrupted" else extent.data
            await client.put(offset, data)
        with pytest.raises(CloneRefused) as refused:
            await client.finish(digest.hexdigest())
        assert refused.value.reason == "CloneDigestMismatch" and refused.value.retryable
        assert target.written() == []  # nothing committed, the partial disk removed
        # The server forgot the clone: the same cloner can start over and succeed.
        await client.begin(cp.Begin(SOURCE_SIZE, cp.VolumeMode.FILESYSTEM))
        for extent in sent:
            await client.put(extent.offset, extent.data)
        await client.finish(digest.hexdigest())
    assert sha256_of(target.disk, SOURCE_SIZE) == sha256_of(source / "disk.img", SOURCE_SIZE)


async def test_archive_content_and_missing_disk_image_are_refused(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    target = await clone_target()
    client, _ = await _protocol_client(pki, clone_cert, target.port)
    async with client:
        with pytest.raises(CloneRefused) as refused:
            await client.begin(cp.Begin(1 * MiB, cp.VolumeMode.FILESYSTEM, content_type="archive"))
    assert refused.value.reason == "CloneContentTypeNotSupported"
    empty = tmp_path / "archive-volume"
    empty.mkdir()
    (empty / "some-file.txt").write_text("a filesystem tree, not a disk image")
    with pytest.raises(ConfigurationError, match="only volumes holding a disk image"):
        await run_clone(cloner_env(pki, clone_cert, target.port, empty))


def test_progress_metric_uses_the_clone_name() -> None:
    progress = Progress()
    progress.raise_to(45.2678)
    body = CloneMetricsServer(progress, "uid-1", "off").body().decode()
    assert 'kubevirt_cdi_clone_progress_total{ownerUID="uid-1"} 45.27' in body


async def test_the_metrics_page_carries_the_bytes_of_the_source_data_sent(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    """Bytes done and total count the source's data extents (what SEEK_DATA finds: the layout's extents,
    the zero-filled one included, rounded out to filesystem blocks), never its holes; the page the
    controller scrapes carries them beside the percentage, and on success done equals total."""
    source = source_dir(tmp_path)
    target = await clone_target(UPLOAD_IMAGE_SIZE="64Mi")
    progress = Progress()
    pages: list[tuple[int, int | None]] = []
    server = CloneMetricsServer(progress, "uid-1", "off")

    async def watch() -> None:
        while True:
            body = server.body().decode()
            pages.append((parse_bytes(body, TRANSFER_BYTES_DONE, "uid-1") or 0,
                          parse_bytes(body, TRANSFER_BYTES_TOTAL, "uid-1")))
            await asyncio.sleep(0)

    watching = asyncio.create_task(watch())
    try:
        await run_clone(cloner_env(pki, clone_cert, target.port, source), progress)
    finally:
        watching.cancel()
    extents = sum(length for _, length, _ in LAYOUT)
    total = progress.total
    assert total is not None and extents <= total <= extents + 2 * 4096 * len(LAYOUT) < SOURCE_SIZE
    assert progress.done == total and progress.percent == 100.0
    body = server.body().decode()
    assert f'pycdi_transfer_bytes_done{{ownerUID="uid-1"}} {total}' in body
    assert f'pycdi_transfer_bytes_total{{ownerUID="uid-1"}} {total}' in body
    # before the extents are read nothing is known; from then on the total is, before the first byte is sent
    assert all(page == (0, None) or page[1] == total for page in pages), set(pages)
    assert [done for done, _ in pages] == sorted(done for done, _ in pages)  # never backwards


async def test_the_console_script_reports_a_failure_like_the_importer(pki: TestPKI, clone_cert: ClientCert,
                                                                      tmp_path: Path) -> None:
    empty = tmp_path / "not-a-disk"
    empty.mkdir()
    log = tmp_path / "termination-log"
    env = {**os.environ, **cloner_env(pki, clone_cert, 1, empty), "CDI_TERMINATION_LOG": str(log)}
    process = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "cdi-cloner"), env=env,
                                                   stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), 60) == 1
    message = TerminationMessage.parse(log.read_text())
    assert (message.reason, message.retryable) == ("InvalidConfiguration", False)
    assert "only volumes holding a disk image" in message.message
