"""Helpers for the host-assisted clone tests: sparse source images with a known layout, loop devices
filled with stale bytes (so a hole that was not zeroed shows), the cloner's environment for an
in-process upload server, and a relay that counts the bytes it forwards and cuts connections."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cdi.contracts import clone_protocol as cp
from tests.support.relay import CuttingRelay
from tests.support.tls import ClientCert, TestPKI

MiB = 1 << 20
CLIENT = cp.client_name("src-ns", "source", "dst-ns", "target")
# (offset, length, fill) of the data written into a source; everything else is a hole. The fill
# `None` writes real zeros (allocated, found by zero detection); the last extent ends unaligned.
LAYOUT: tuple[tuple[int, int, int | None], ...] = (
    (0, 3 * MiB + 4096, 0x11), (5 * MiB, 2 * MiB, None), (7 * MiB, 9 * MiB + 512, 0x22),
    (30 * MiB + 100, 70_000, 0x33), (40 * MiB - 4096, 4096, 0x44))
SOURCE_SIZE = 40 * MiB


def pattern(length: int, fill: int, seed: int) -> bytes:
    """Non-repeating bytes (so a misplaced block shows), never a whole zero block."""
    block = hashlib.sha256(bytes([fill]) + seed.to_bytes(8, "big")).digest() * (4096 // 32)
    return (block * (length // len(block) + 1))[:length]


def write_layout(path: Path, size: int = SOURCE_SIZE, layout: tuple[tuple[int, int, int | None], ...] = LAYOUT,
                 *, truncate: bool = True) -> None:
    mode = "r+b" if path.exists() else "wb"
    with path.open(mode) as f:
        if truncate:
            f.truncate(size)
        for offset, length, fill in layout:
            f.seek(offset)
            f.write(bytes(length) if fill is None else pattern(length, fill, offset))


def sha256_of(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        remaining = length
        while remaining and (block := f.read(min(remaining, 4 * MiB))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def data_bytes(layout: tuple[tuple[int, int, int | None], ...] = LAYOUT) -> int:
    return sum(length for _, length, fill in layout if fill is not None)


@contextmanager
def loop_device(backing: Path, size: int, stale: int = 0xEE) -> Iterator[Path]:
    with backing.open("wb") as f:
        chunk = bytes([stale]) * MiB
        for _ in range(size // MiB):
            f.write(chunk)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


@contextmanager
def read_only_loop(backing: Path) -> Iterator[Path]:
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(backing)], capture_output=True,
                            text=True, check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def cloner_env(pki: TestPKI, cert: ClientCert, port: int, source: Path, *, block: bool = False,
               **extra: str) -> dict[str, str]:
    return {cp.UPLOAD_URL: f"https://127.0.0.1:{port}/v1beta1/upload", cp.CLIENT_CERT: cert.cert.read_text(),
            cp.CLIENT_KEY: cert.key.read_text(), cp.SERVER_CA_CERT: pki.ca_cert.read_text(),
            cp.OWNER_UID: "owner-uid", cp.VOLUME_MODE: "block" if block else "filesystem",
            cp.MOUNT_POINT: str(source), "CDI_METRICS_ADDR": "off", **extra}


class _CountedReader:
    def __init__(self, inner: asyncio.StreamReader, relay: CountingRelay) -> None:
        self._inner = inner
        self._relay = relay

    async def read(self, n: int) -> bytes:
        data = await self._inner.read(n)
        self._relay.received += len(data)
        return data


class CountingRelay(CuttingRelay):
    """A cutting relay that also counts the bytes the client sent through it (TLS records included)."""

    received = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        counted: Any = _CountedReader(reader, self)
        await super()._relay(counted, writer, up_reader, up_writer, context)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512
