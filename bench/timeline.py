"""`python -m bench.timeline`: where the control plane's time goes around one `cdi image-upload` and one
DataVolume import, on loopback (no shaping, no namespaces), as a list of timestamped steps.

Run on purpose, as root (the volumes are loop devices), never by the tests. It starts a `cdi serve`
(`--pod-runtime process`) in a fresh home under `--cache`, then:

- **upload**: runs `cdi image-upload dv` of a small qcow2 and stamps each line the command prints (its
  start, the DataVolume created, waiting, the transfer, completion) and its exit, and, from a watch on
  the store in this process, when each claim (the target and the upload pod's scratch) was created, got
  its volume and was bound, and when the target claim's annotations saw the upload pod Running, ready
  and Succeeded; then, from `cdi serve`'s log, when the upload proxy answered the command's first GET
  (the upload server serving: its start ends there), its first PUT and its last;
- **import**: creates an HTTP-import DataVolume of a sparse qcow2 served by a Python HTTP server on
  loopback, timed from the create to Ready, with the same claim and pod stamps, and the importer's own
  run (`cdi-importer` alone, into a fresh 70 GiB ext4 loop volume like the pod's) for comparison.

Every process here is a fresh Python: with PYTHONDONTWRITEBYTECODE set and no current `.pyc` beside the
sources, each one (the command, every pod) compiles what it imports, ~0.15 s of CPU for `cdi` alone; the
run says so when the variable is set (PYTHONPYCACHEPREFIX keeps compiled files out of the tree).

The steps are printed relative to the command's start; `bench/README.md` tells how to read them. The
data-path benchmark (`bench/run.sh`) measures the same flows across a shaped link; this one is for
finding the control plane's share, which a shared machine's noise hides in the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import yaml

from cdi.cli.state import open_cluster
from cdi.embedded.volumes.commands import mkfs_argv
from tests.support.controlplane import release_storage

HERE = Path(__file__).resolve().parent
CDI = str(Path(sys.executable).with_name("cdi"))
MiB = 1 << 20

Stamps = list[tuple[float, str]]


def _serve(home: Path, proxy_port: int) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CDI_HOME": str(home)}
    with (home / "serve.log").open("ab") as log:
        process = subprocess.Popen([CDI, "serve", "--pod-runtime", "process", "--uploadproxy-port", str(proxy_port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ok = subprocess.run([CDI, "get", "cdiconfig", "config"], env=env, capture_output=True, check=False)
        if ok.returncode == 0 and b"started" in (home / "serve.log").read_bytes():
            return process
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError("cdi serve did not start:\n" + (home / "serve.log").read_text(errors="replace")[-3000:])


def _notes(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


async def _watch(home: Path, stamps: Stamps, stop: asyncio.Event) -> None:
    """Stamp claim binds, pod phases and the target claim's pod annotations as the store shows them."""
    seen: set[str] = set()

    def note(what: str) -> None:
        if what not in seen:
            seen.add(what)
            stamps.append((time.monotonic(), what))

    async with open_cluster(home, warn=False) as cluster:
        async def follow(api: str, kind: str) -> None:
            namespace = None if kind == "PersistentVolume" else "default"
            listed = await cluster.list(api, kind, namespace)
            async for event in cluster.watch(api, kind, resource_version=listed.resource_version,
                                             namespace=namespace):
                obj, name = event.object, event.object["metadata"]["name"]
                if event.type == "DELETED" and kind != "Pod":
                    continue  # the previous round's objects going away
                if kind == "PersistentVolumeClaim":
                    note(f"claim {name} created")
                    if (obj.get("metadata") or {}).get("finalizers"):
                        note(f"claim {name} finalizer")
                    if (obj.get("spec") or {}).get("volumeName"):
                        note(f"claim {name} volumeName set")
                    if (obj.get("status") or {}).get("phase") == "Bound":
                        note(f"claim {name} Bound")
                    for key, value in _notes(obj).items():
                        if key.endswith("/storage.pod.phase") or key.endswith("/storage.pod.ready"):
                            note(f"claim {name} {key.rsplit('/', 1)[1]}={value}")
                elif kind == "Pod":
                    note(f"pod {name} created")
                    if phase := (obj.get("status") or {}).get("phase"):
                        note(f"pod {name} {phase}")
                    for condition in (obj.get("status") or {}).get("conditions") or ():
                        note(f"pod {name} {condition.get('type')}={condition.get('status')}")
                    if event.type == "DELETED":
                        note(f"pod {name} deleted")
                elif kind == "DataVolume" and (phase := (obj.get("status") or {}).get("phase")):
                    note(f"dv {name} {phase}")
                elif kind == "PersistentVolume":
                    claim = ((obj.get("spec") or {}).get("claimRef") or {}).get("name", "?")
                    note(f"volume of {claim} created")
                    if (obj.get("status") or {}).get("phase") == "Bound":
                        note(f"volume of {claim} Bound")

        tasks = [asyncio.create_task(follow(api, kind)) for api, kind in
                 (("v1", "PersistentVolumeClaim"), ("v1", "Pod"), ("cdi.kubevirt.io/v1beta1", "DataVolume"),
                  ("v1", "PersistentVolume"))]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stream(stream: asyncio.StreamReader, stamps: Stamps, tag: str) -> None:
    buffer = b""
    while chunk := await stream.read(4096):
        buffer += chunk
        *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").strip()
            if text and not text.startswith("["):  # progress bar redraws
                stamps.append((time.monotonic(), f"{tag}: {text[:110]}"))


@contextlib.asynccontextmanager
async def _watching(home: Path) -> AsyncIterator[Stamps]:
    stamps: Stamps = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(home, stamps, stop))
    await asyncio.sleep(0.3)  # the watches are open before the command starts
    try:
        yield stamps
    finally:
        await asyncio.sleep(0.3)
        stop.set()
        await watcher


PROXY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO uploadproxy\.app: (\w+) \S+ for "
                        r"default/(\S+): (\d+)")


def proxy_answers(log: Path, name: str, since: int) -> Stamps:
    """The upload proxy's answers for `name` logged after byte `since` of `cdi serve`'s log, on the monotonic
    clock (the log's wall-clock times are to the millisecond)."""
    offset = time.time() - time.monotonic()
    stamps: Stamps = []
    with log.open("rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            if (found := PROXY_LINE.match(line)) and found.group(3) == name:
                wall = datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                stamps.append((wall - offset, f"proxy answered {found.group(2)} {found.group(4)}"))
    first = {what: at for at, what in reversed(stamps)}  # the first of each kind, and the last answer
    kept = {(at, what) for what, at in first.items()}
    if stamps:
        kept.add((stamps[-1][0], f"{stamps[-1][1]} (last)"))
    return sorted(kept)


async def upload(home: Path, image: Path, proxy_port: int, name: str) -> Stamps:
    env = {**os.environ, "CDI_HOME": str(home)}
    log_size = (home / "serve.log").stat().st_size
    async with _watching(home) as stamps:
        start = time.monotonic()
        stamps.append((start, "cdi image-upload started"))
        proc = await asyncio.create_subprocess_exec(
            CDI, "image-upload", "dv", name, "--size", "1Gi", "--image-path", str(image), "--insecure",
            "--uploadproxy-url", f"https://127.0.0.1:{proxy_port}", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(_stream(proc.stdout, stamps, "out"), _stream(proc.stderr, stamps, "err"))
        code = await proc.wait()
        stamps.append((time.monotonic(), f"cdi image-upload exited {code}"))
    await asyncio.sleep(0.1)  # the log's last lines written
    return stamps + proxy_answers(home / "serve.log", name, log_size)


DV = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
      "spec": {"storage": {"resources": {"requests": {"storage": "70Gi"}}}, "source": {"http": {}}}}


async def datavolume(home: Path, url: str, name: str) -> Stamps:
    manifest: dict[str, Any] = yaml.safe_load(yaml.safe_dump(DV))
    manifest["metadata"] = {"name": name, "namespace": "default"}
    manifest["spec"]["source"]["http"]["url"] = url
    async with _watching(home) as stamps, open_cluster(home, warn=False) as cluster:
        start = time.monotonic()
        stamps.append((start, "DataVolume create"))
        await cluster.create(manifest)
        while True:
            dv = await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", name, "default")
            status = dv.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                stamps.append((time.monotonic(), f"read: DataVolume {status['phase']}"))
                break
            await asyncio.sleep(0.02)
    return stamps


@contextlib.contextmanager
def ext4_volume(mount_dir: Path, size: int) -> Iterator[Path]:
    """A fresh ext4 filesystem of `size` bytes on a loop device mounted at `mount_dir`, formatted as the
    embedded pool formats a volume, so the importer alone writes to what its pod writes to (and the
    host's free space need not hold the image's virtual size)."""
    image = mount_dir.with_suffix(".img")
    shutil.rmtree(mount_dir, ignore_errors=True)
    mount_dir.mkdir(parents=True)
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size)
    try:
        subprocess.run(mkfs_argv("ext4", str(image)), check=True, capture_output=True)
        # noinit_itable as the pool mounts: no kernel thread zeroing inode tables under the importer
        subprocess.run(["mount", "-t", "ext4", "-o", "loop,noinit_itable", str(image), str(mount_dir)], check=True,
                       capture_output=True)
        try:
            yield mount_dir
        finally:
            subprocess.run(["umount", str(mount_dir)], check=False, capture_output=True)
    finally:
        image.unlink(missing_ok=True)


def importer_alone(url: str, work: Path) -> float | str:
    with ext4_volume(work / "alone-data", 70 << 30) as data:
        return _run_importer(url, work, data)


def _run_importer(url: str, work: Path, data: Path) -> float | str:
    scratch = work / "alone-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url,
           "CDI_DATA_PATH": str(data), "CDI_SCRATCH_PATH": str(scratch),
           "CDI_TERMINATION_LOG": str(work / "alone-termination"), "CDI_METRICS_ADDR": "127.0.0.1:0"}
    if "PYTHONPATH" in os.environ:  # the same tree as the control plane's importer (comparing two checkouts)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "importer"], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        return f"failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()[-300:]}"
    return time.monotonic() - start


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def images(cache: Path, upload_mib: int) -> tuple[Path, Path]:
    """A qcow2 of `upload_mib` MiB of random data, and a 64 GiB sparse qcow2 holding 200 MiB."""
    cache.mkdir(parents=True, exist_ok=True)
    small, sparse = cache / f"upload-{upload_mib}m.qcow2", cache / "sparse-64g.qcow2"
    if not small.exists():
        raw = cache / "upload.raw"
        with raw.open("wb") as f:
            f.write(os.urandom(upload_mib * MiB))
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(small)], check=True)
        raw.unlink()
    if not sparse.exists():
        raw = cache / "sparse.raw"
        with raw.open("wb") as f:
            f.truncate(64 << 30)
            for i in range(50):  # 50 × 4 MiB spread over the disk
                f.seek(i * ((64 << 30) // 50))
                f.write(os.urandom(4 * MiB))
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(sparse)], check=True)
        raw.unlink()
    return small, sparse


def show(title: str, stamps: Stamps) -> None:
    stamps.sort()
    start = stamps[0][0]
    print(f"== {title}")
    previous = start
    for at, what in stamps:
        print(f"  {at - start:7.3f}  (+{at - previous:6.3f})  {what}")
        previous = at


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.timeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache" / "timeline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload-mib", type=int, default=64)
    parser.add_argument("--only", choices=("upload", "import"), default=None)
    parser.add_argument("--proxy-port", type=int, default=18443)
    args = parser.parse_args()
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        print("note: PYTHONDONTWRITEBYTECODE is set: every process compiles the modules that have no current .pyc")
    small, sparse = images(args.cache / "images", args.upload_mib)
    home = args.cache / "home"
    shutil.rmtree(home, ignore_errors=True)
    serve = _serve(home, args.proxy_port)
    env = {**os.environ, "CDI_HOME": str(home)}
    try:
        with http_server(sparse.parent) as base:
            for round_ in range(args.rounds):
                if args.only in (None, "upload"):
                    name = f"up{round_}"
                    show(f"upload round {round_}", asyncio.run(upload(home, small, args.proxy_port, name)))
                    subprocess.run([CDI, "delete", "dv", name, "--wait"], env=env, capture_output=True, check=False)
                if args.only in (None, "import"):
                    name = f"imp{round_}"
                    url = f"{base}/{sparse.name}"
                    show(f"import round {round_}", asyncio.run(datavolume(home, url, name)))
                    subprocess.run([CDI, "delete", "dv", name, "--wait"], env=env, capture_output=True, check=False)
                    alone = importer_alone(url, args.cache)
                    print(f"  importer alone: {alone:.3f} s" if isinstance(alone, float) else
                          f"  importer alone {alone}")
    finally:
        serve.terminate()
        serve.wait(60)
        release_storage(home)


if __name__ == "__main__":
    main()
