"""`cdi demo`: the README's main job. Starts the embedded control plane (`cdi serve`, in its own home
directory), generates a sample disk (a gzip-compressed qcow2) and serves it on a local HTTP server,
applies a DataVolume that imports it, shows the DataVolume's phase and progress live, and when it has
Succeeded verifies the disk on the volume against `qemu-img convert` of the same image. It then
deletes the DataVolume (releasing the volume) and stops the control plane."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import random
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from cdi.api.meta import CDI_API_VERSION
from cdi.cli.errors import CliError
from cdi.cli.state import open_cluster
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.embedded.pods.volumes import pv_path

DISK_SIZE = 256 << 20
DATA_MIB = 48
SERVE_RATE = 16 << 20  # bytes per second, slow enough to watch the progress move
DV_NAME = "demo-disk"


class DemoError(CliError):
    """A step of the demo failed (reported like any CLI error)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("demo", help="start the control plane and import a generated image via a DataVolume")
    parser.set_defaults(run=lambda args, home: asyncio.run(run_demo(home / "demo")))


def sha256_file(path: Path, length: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = path.stat().st_size if length is None else length
    with path.open("rb") as f:
        while remaining > 0 and (block := f.read(min(remaining, 1 << 20))):
            digest.update(block)
            remaining -= len(block)
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
    try:
        with path.open("rb") as f:
            while block := f.read(256 << 10):
                await response.write(block)
                await asyncio.sleep(len(block) / SERVE_RATE)
        await response.write_eof()
    except ConnectionError:
        pass  # the first importer stops reading once it sees a qcow2 and asks for scratch space
    return response


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _manifest(url: str) -> dict[str, Any]:
    return {"apiVersion": CDI_API_VERSION, "kind": "DataVolume",
            "metadata": {"name": DV_NAME, "namespace": "default"},
            "spec": {"source": {"http": {"url": url}}, "storage": {"resources": {"requests": {"storage": "512Mi"}}}}}


async def _start_control_plane(home: Path) -> asyncio.subprocess.Process:
    cdi = str(Path(sys.executable).with_name("cdi"))
    log = (home / "serve.log").open("ab")
    proc = await asyncio.create_subprocess_exec(cdi, "--home", str(home), "serve", "--uploadproxy-port", "0",
                                                stdout=log, stderr=log)
    log.close()
    print(f"started the embedded control plane (cdi serve, pid {proc.pid}; log: {home / 'serve.log'})")
    return proc


async def _watch(cluster: Cluster, proc: asyncio.subprocess.Process, timeout: float = 300) -> dict[str, Any]:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise DemoError("the control plane stopped unexpectedly; see serve.log")
        try:
            dv = await cluster.get(CDI_API_VERSION, "DataVolume", DV_NAME, "default")
        except NotFound:
            dv = {}
        status = dv.get("status") or {}
        phase, progress = status.get("phase", ""), status.get("progress", "")
        percent = float(progress.rstrip("%")) if progress.endswith("%") else 0.0
        line = f"  {DV_NAME}  [{'#' * int(percent / 2.5):<40}] {progress or 'N/A':>7}  {phase}"
        if line != last:
            sys.stdout.write("\r" + line.ljust(90))
            sys.stdout.flush()
            last = line
        if phase in ("Succeeded", "Failed"):
            print()
            return dv
        await asyncio.sleep(0.25)
    raise DemoError(f"DataVolume {DV_NAME} did not finish within {timeout:.0f} s")


async def run_demo(home: Path) -> int:
    await _cleanup_previous(home)
    home.mkdir(parents=True)
    print(f"generating a sample disk in {home} ...")
    served, reference = await make_sample(home)
    app = web.Application()
    app["file"] = served
    app.router.add_get("/sample.qcow2.gz", _serve_slowly)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/sample.qcow2.gz"
    print(f"serving {served.name} ({served.stat().st_size} bytes) at {url}")
    proc = await _start_control_plane(home)
    try:
        async with open_cluster(home, create=True, warn=False) as cluster:  # its own `cdi serve` is starting
            await cluster.create(_manifest(url))
            print(f"applied DataVolume {DV_NAME} (http source, 512Mi)")
            dv = await _watch(cluster, proc)
            return await _finish(cluster, dv, reference)
    finally:
        await runner.cleanup()
        await _stop(proc)


async def _finish(cluster: Cluster, dv: dict[str, Any], reference: str) -> int:
    status = dv.get("status") or {}
    if status.get("phase") != "Succeeded":
        running: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Running"), {})
        raise DemoError(f"DataVolume {DV_NAME} failed: {running.get('message', 'see cdi describe dv')}")
    pvc = await cluster.get("v1", "PersistentVolumeClaim", DV_NAME, "default")
    pv = await cluster.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])
    disk = Path(pv_path(pv) or "") / "disk.img"
    digest = sha256_file(disk, DISK_SIZE)
    ok = digest == reference
    print(f"DataVolume {DV_NAME}: Succeeded; volume {pv['metadata']['name']}, disk.img {disk.stat().st_size} bytes")
    print(f"sha256 of the imported disk's first {DISK_SIZE} bytes: {digest}")
    print(f"sha256 of qemu-img convert of the sample:            {reference}  -> "
          f"{'checksum verified' if ok else 'MISMATCH'}")
    await cluster.delete(CDI_API_VERSION, "DataVolume", DV_NAME, "default")
    for _ in range(120):
        try:
            await cluster.get("v1", "PersistentVolume", pv["metadata"]["name"])
        except NotFound:
            break
        await asyncio.sleep(0.25)
    print("deleted the DataVolume; its volume was released")
    return 0 if ok else 1


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    print("stopped the control plane")


async def _cleanup_previous(home: Path) -> None:
    """A previous demo run that was interrupted may have left mounts and loop devices under `home`."""
    if not home.exists():
        return
    real = str(home.resolve())
    # loop devices first: volume images live on the pool's reflink filesystem under `home`, and once that
    # is (lazily) unmounted the kernel no longer names their backing files by a path under `home`
    proc = await asyncio.create_subprocess_exec("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    devices = [parts[0] for parts in (line.split(None, 1) for line in out.decode().splitlines())
               if len(parts) == 2 and parts[1].strip().startswith(real)]
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(real)), key=lambda m: m.count("/"), reverse=True):
        await _run_quiet("umount", "-l", mount)
    for device in devices:
        await _run_quiet("losetup", "--detach", device)
    shutil.rmtree(home, ignore_errors=True)
    if home.exists():
        raise DemoError(f"could not clean up {home}")


async def _run_quiet(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()
