"""`cdi demo`: the README's main job. Generates a sample disk (a qcow2, gzip-compressed), serves it on
a local HTTP server, runs the real `cdi-importer` against it with upstream's env-var contract, shows
live progress read from the importer's metrics endpoint, and verifies the imported disk's checksum
against `qemu-img convert` of the same image."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import os
import random
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from cdi.contracts import importer_env as env
from cdi.contracts.metrics import METRICS_PATH, parse_progress
from cdi.contracts.termination import TerminationMessage

OWNER_UID = "demo-owner"
DISK_SIZE = 256 << 20
DATA_MIB = 48
SERVE_RATE = 16 << 20  # bytes per second, slow enough to watch the progress bar move


class DemoError(Exception):
    pass


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("demo", help="import a generated sample image over local HTTP")
    parser.set_defaults(run=lambda args, home: asyncio.run(run_demo(home / "demo")))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise DemoError(f"{argv[0]} failed: {err.decode().strip()}")


async def make_sample(workdir: Path) -> tuple[Path, str]:
    """A 256 MiB disk with 48 MiB of incompressible data; returns the .qcow2.gz and the raw sha256."""
    raw, qcow2 = workdir / "sample.raw", workdir / "sample.qcow2"
    with raw.open("wb") as f:
        f.truncate(DISK_SIZE)
        rng = random.Random(2026)
        for i in range(DATA_MIB):
            f.seek((i * 5 + 1) << 20)
            f.write(rng.randbytes(1 << 20))
    await _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    reference = sha256_file(raw)
    served = workdir / "www" / "sample.qcow2.gz"
    served.parent.mkdir(exist_ok=True)
    with qcow2.open("rb") as src, gzip.open(served, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    raw.unlink()
    qcow2.unlink()
    return served, reference


async def _serve_slowly(request: web.Request) -> web.StreamResponse:
    path: Path = request.app["file"]
    response = web.StreamResponse(headers={"Content-Length": str(path.stat().st_size)})
    await response.prepare(request)
    with path.open("rb") as f:
        while block := f.read(256 << 10):
            await response.write(block)
            await asyncio.sleep(len(block) / SERVE_RATE)
    await response.write_eof()
    return response


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _watch_progress(port: int, proc: asyncio.subprocess.Process) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the importer's endpoint uses a throwaway self-signed certificate
    percent = 0.0
    async with aiohttp.ClientSession() as session:
        while proc.returncode is None:
            try:
                async with session.get(f"https://127.0.0.1:{port}{METRICS_PATH}", ssl=context) as response:
                    percent = parse_progress(await response.text(), OWNER_UID) or percent
            except aiohttp.ClientError:
                pass
            bar = "#" * int(percent / 2.5)
            sys.stdout.write(f"\r  importing [{bar:<40}] {percent:6.2f}%")
            sys.stdout.flush()
            await asyncio.sleep(0.25)
    print()


async def run_demo(workdir: Path) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "data").mkdir(parents=True)
    (workdir / "scratch").mkdir()
    print(f"generating a sample disk in {workdir} ...")
    served, reference = await make_sample(workdir)
    app = web.Application()
    app["file"] = served
    app.router.add_get("/sample.qcow2.gz", _serve_slowly)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    http_port, metrics_port = _free_port(), _free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    url = f"http://127.0.0.1:{http_port}/sample.qcow2.gz"
    print(f"serving {served.name} ({served.stat().st_size} bytes) at {url}")
    termination = workdir / "termination-log"
    environ = {**os.environ, env.SOURCE: env.SOURCE_HTTP, env.ENDPOINT: url, env.IMAGE_SIZE: "512Mi",
               env.OWNER_UID: OWNER_UID, env.FILESYSTEM_OVERHEAD: "0.06", env.CONTENT_TYPE: env.CONTENT_KUBEVIRT,
               env.DATA_PATH: str(workdir / "data"), env.SCRATCH_PATH: str(workdir / "scratch"),
               env.TERMINATION_LOG: str(termination), env.METRICS_ADDR: f"127.0.0.1:{metrics_port}"}
    started = time.monotonic()
    with (workdir / "importer.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec("cdi-importer", env=environ, stderr=log)
        watcher = asyncio.create_task(_watch_progress(metrics_port, proc))
        code = await proc.wait()
        await watcher
    await runner.cleanup()
    message = TerminationMessage.parse(termination.read_text()) if termination.exists() else None
    print(f"cdi-importer exited {code} after {time.monotonic() - started:.1f} s: "
          f"{message.message if message else 'no termination message'}")
    if code != 0 or message is None or message.message != "Import Complete":
        raise DemoError(f"import failed; see {workdir / 'importer.log'}")
    return _verify(workdir / "data" / "disk.img", reference)


def _verify(disk: Path, reference: str) -> int:
    """The imported disk is the sample's raw content, then zeros up to the usable size."""
    digest = hashlib.sha256()
    with disk.open("rb") as f:
        digest.update(f.read(DISK_SIZE))
        tail_zero = all(not block.strip(b"\0") for block in iter(lambda: f.read(1 << 20), b""))
    ok = digest.hexdigest() == reference and tail_zero
    print(f"disk.img: {disk.stat().st_size} bytes (resized to the usable space of 512Mi at 6% overhead)")
    print(f"sha256 of the first {DISK_SIZE} bytes: {digest.hexdigest()}")
    print(f"expected (qemu-img reference):       {reference}  -> {'verified' if ok else 'MISMATCH'}")
    return 0 if ok else 1
