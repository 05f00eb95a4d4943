"""`python -m bench.clone` (via `bash bench/clone.sh`): the host-assisted clone benchmark of issue 12.

A 64 GiB sparse raw image holding 2 GiB of data (64 random 32 MiB extents spread over it) on a
loop-mounted ext4 scratch filesystem (ext4, not XFS, so `cp` cannot reflink and must move the data).
Side by side, on the same machine, with the source's data in the page cache (a warm-up copy first):

    cp --sparse=always    cp, then `sync FILE` (our upload server fsyncs the clone before it reports)
    ours                  `cdi-cloner` → `cdi-uploadserver` (clone-target mode), mutual TLS on loopback,
                          both real processes, until the server has committed the disk and exited
    upstream-style        every byte read and sent over mutual TLS in one streaming POST to a receiver
                          that discards it (`bench.clone_full`): it does not even write the target

The machine is shared and its load moves, so cp and ours run in pairs (`--rounds`, 3 by default),
the order within a pair alternating from round to round, each method after an untimed `sync` so that
neither is timed while the other's writes are still being flushed (the loop device's backing file
included); the table shows each method's median round and every pair's ratio is listed under it.

Targets: ours ≤ 1.2× cp's time; bytes on the wire ≤ 2 GiB + 1%. Bytes on the wire are counted by an
iptables rule on the loopback interface for the server's port: every IP packet from client to
server, TLS records, HTTP and TCP/IP headers included. The result is
printed and written to `bench/results/<date>-clone.{md,json}`. Needs root (mount).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cdi.contracts import clone_protocol as cp
from cdi.pki import issue, new_ca
from importer.cloner.extents import extents

HERE = Path(__file__).resolve().parent
GiB = 1 << 30
CHUNK = 32 << 20
CLIENT = cp.client_name("bench", "source", "bench", "target")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _pki(directory: Path) -> dict[str, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca = new_ca("bench-ca", now)
    server = issue(ca, "localhost", now, names=("localhost", "127.0.0.1"))
    client = issue(ca, CLIENT, now, client=True)
    files = {"ca": ca.cert_pem, "server.crt": server.cert_pem, "server.key": server.key_pem,
             "client.crt": client.cert_pem, "client.key": client.key_pem}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return {name: directory / name for name in files}


def _make_source(path: Path, size: int, data: int) -> None:
    count = data // CHUNK
    stride = size // count
    with path.open("wb") as f:
        f.truncate(size)
        for i in range(count):
            f.seek(i * stride + (i * 4096) % stride)  # not all on a round boundary
            f.write(os.urandom(CHUNK))
        os.fsync(f.fileno())


class WireCounter:
    """An iptables ACCEPT rule counting the client → server packets of one port on loopback."""

    def __init__(self, port: int) -> None:
        self._rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port), "-j", "ACCEPT", "-m", "comment",
                      "--comment", f"cdibench-clone-{port}"]

    def __enter__(self) -> WireCounter:
        _run("iptables", "-I", *self._rule[:1], "1", *self._rule[1:])
        return self

    def __exit__(self, *_exc: object) -> None:
        subprocess.run(["iptables", "-D", *self._rule], check=False)

    def bytes(self) -> int:
        listing = subprocess.run(["iptables", "-L", "OUTPUT", "-v", "-x", "-n"], check=True, capture_output=True,
                                 text=True).stdout
        line = next(line for line in listing.splitlines() if self._rule[-1] in line)
        return int(line.split()[1])


def _layout_digest(path: Path, size: int) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = cp.LayoutDigest(size)
        for extent in extents(fd, size):
            digest.add(extent.offset, len(extent.data), extent.sha256)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _cpu() -> float:
    """CPU seconds (user + system) of every child waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cp(source: Path, target: Path) -> float:
    start = time.perf_counter()
    _run("cp", "--sparse=always", str(source), str(target))
    _run("sync", str(target))
    return time.perf_counter() - start


def _ours(source_dir: Path, target_dir: Path, pki: dict[str, Path], size: int, work: Path) -> tuple[float, int]:
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    server_env = {**os.environ, "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port),
                  "CDI_DATA_PATH": str(target_dir), "TLS_CERT_FILE": str(pki["server.crt"]),
                  "TLS_KEY_FILE": str(pki["server.key"]), "CLIENT_CERT_FILE": str(pki["ca"]), "CLIENT_NAME": CLIENT,
                  "UPLOAD_IMAGE_SIZE": str(size), "FILESYSTEM_OVERHEAD": "0",
                  "CDI_TERMINATION_LOG": str(work / "server-termination")}
    server = subprocess.Popen([str(bin_dir / "cdi-uploadserver")], env=server_env, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        cloner_env = {**os.environ, cp.UPLOAD_URL: f"https://127.0.0.1:{port}/v1beta1/upload",
                      cp.CLIENT_CERT: pki["client.crt"].read_text(), cp.CLIENT_KEY: pki["client.key"].read_text(),
                      cp.SERVER_CA_CERT: pki["ca"].read_text(), cp.OWNER_UID: "bench", cp.VOLUME_MODE: "filesystem",
                      cp.MOUNT_POINT: str(source_dir), "CDI_METRICS_ADDR": "off",
                      "CDI_TERMINATION_LOG": str(work / "cloner-termination")}
        with WireCounter(port) as wire:
            start = time.perf_counter()
            cloner = subprocess.run([str(bin_dir / "cdi-cloner")], env=cloner_env, capture_output=True, text=True,
                                    check=False)
            server.wait(timeout=600)
            elapsed = time.perf_counter() - start
            sent = wire.bytes()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if cloner.returncode != 0 or server.returncode != 0:
        raise RuntimeError(f"clone failed: cloner {cloner.returncode} {cloner.stderr[-2000:]}; "
                           f"server {server.returncode}")
    return elapsed, sent


def _full(source: Path, pki: dict[str, Path]) -> tuple[float, int]:
    port = _free_port()
    tls = ["--port", str(port), "--ca", str(pki["ca"])]
    sink = subprocess.Popen([sys.executable, "-m", "bench.clone_full", "sink", *tls, "--cert", str(pki["server.crt"]),
                             "--key", str(pki["server.key"])], stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        with WireCounter(port) as wire:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bench.clone_full", "send", *tls, "--cert", str(pki["client.crt"]),
                            "--key", str(pki["client.key"]), "--source", str(source)], capture_output=True, check=True,
                           cwd=HERE.parent)
            sink.wait(timeout=600)
            elapsed = time.perf_counter() - start
            sent = wire.bytes()
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    return elapsed, sent


def _median(rows: list[dict[str, object]]) -> dict[str, object]:
    return sorted(rows, key=lambda row: float(row["seconds"]))[len(rows) // 2]  # type: ignore[arg-type]


def _rounds(pairs: list[tuple[dict[str, object], dict[str, object]]]) -> list[str]:
    if len(pairs) < 2:
        return []
    listed = "; ".join(f"{float(ours['seconds']):.2f} s vs {float(cp_row['seconds']):.2f} s "  # type: ignore[arg-type]
                       f"({float(ours['seconds']) / float(cp_row['seconds']):.2f}×, "  # type: ignore[arg-type]
                       f"load {float(ours['load']):.1f})" for cp_row, ours in pairs)  # type: ignore[arg-type]
    return ["", f"Rounds (ours vs cp, side by side): {listed}. The table shows each method's median round."]


def _report(rows: list[dict[str, object]], size: int, data: int,
            pairs: list[tuple[dict[str, object], dict[str, object]]]) -> str:
    cp_time = float(rows[0]["seconds"])  # type: ignore[arg-type]
    lines = [f"# Host-assisted clone: {size // GiB} GiB sparse raw image holding {data // GiB} GiB of data",
             "", f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs (load average "
                 f"{os.getloadavg()[0]:.1f} at the end), ext4 on a loop device, source data in the page cache. CPU is "
                 "user + system seconds of the processes of each row (cp's copy is in the kernel, mostly not "
                 "charged to it; loop-device writeback is charged to no one).", "",
             "| method | time (s) | time vs cp | CPU (s) | bytes on the wire | wire vs data |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        seconds, wire = float(row["seconds"]), row["wire"]  # type: ignore[arg-type]
        wire_text = "—" if wire is None else f"{int(wire):,}"  # type: ignore[call-overload]
        ratio = "—" if wire is None else f"{int(wire) / data:.4f}×"  # type: ignore[call-overload]
        cpu = float(row["cpu"])  # type: ignore[arg-type]
        lines.append(f"| {row['method']} | {seconds:.2f} | {seconds / cp_time:.2f}× | {cpu:.2f} | {wire_text} | "
                     f"{ratio} |")
    ours = next(r for r in rows if str(r["method"]).startswith("ours"))
    ratios = sorted(float(o["seconds"]) / float(c["seconds"]) for c, o in pairs)  # type: ignore[arg-type]
    median = ratios[len(ratios) // 2]  # the median of the side-by-side ratios: both measured under the same load
    lines += ["", f"Targets: ours ≤ 1.2× cp (median of the rounds' ratios): **{median:.2f}×** "
                  f"({'met' if median <= 1.2 else 'NOT met'}); "
                  f"wire ≤ data + 1%: **{int(ours['wire']) / data:.4f}×** "  # type: ignore[call-overload]
                  f"({'met' if int(ours['wire']) <= data * 1.01 else 'NOT met'})."]  # type: ignore[call-overload]
    return "\n".join(lines + _rounds(pairs)) + "\n"


def _settled() -> None:
    """Untimed, before each method: nothing of the previous one (its target's removal, the loop
    device's backing file) is still being written back while the next one is timed."""
    os.sync()


def _pair(source: Path, dirs: dict[str, Path], pki: dict[str, Path], size: int, work: Path,
          ours_first: bool) -> tuple[dict[str, object], dict[str, object]]:
    """One round: cp and ours, each into an empty directory, each after a `sync`, in the order given
    (the rounds alternate it); ours is checked against the source."""
    for name in ("cp", "ours"):
        shutil.rmtree(dirs[name])
        dirs[name].mkdir()
    rows: dict[str, dict[str, object]] = {}
    for name in ("ours", "cp") if ours_first else ("cp", "ours"):
        _settled()
        cpu = _cpu()
        if name == "cp":
            seconds, wire = _cp(source, dirs["cp"] / "disk.img"), None
            method = "cp --sparse=always (+ sync)"
        else:
            seconds, wire = _ours(dirs["source"], dirs["ours"], pki, size, work)
            method = "ours: cdi-cloner → cdi-uploadserver, mTLS"
        rows[name] = {"method": method, "seconds": seconds, "wire": wire, "cpu": _cpu() - cpu,
                      "load": os.getloadavg()[0]}
    if _layout_digest(dirs["ours"] / "disk.img", size) != _layout_digest(source, size):
        raise RuntimeError("the clone differs from its source")
    return rows["cp"], rows["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gib", type=int, default=64)
    parser.add_argument("--data-gib", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--skip-full", action="store_true", help="leave out the upstream-style full copy (slow)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating cp / ours pairs (medians reported)")
    args = parser.parse_args()
    size, data = args.size_gib * GiB, args.data_gib * GiB
    work = Path(tempfile.mkdtemp(prefix="cdibench-clone-", dir=args.workdir))
    backing, mount = work / "fs.img", work / "mnt"
    mount.mkdir()
    with backing.open("wb") as f:
        f.truncate(size + 16 * GiB)
    _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", str(backing))
    _run("mount", "-o", "loop", str(backing), str(mount))
    try:
        dirs = {name: mount / name for name in ("source", "warm", "cp", "ours")}
        for directory in dirs.values():
            directory.mkdir()
        pki = _pki(work)
        source = dirs["source"] / "disk.img"
        _make_source(source, size, data)
        _cp(source, dirs["warm"] / "disk.img")  # warm-up: the source's data into the page cache
        (dirs["warm"] / "disk.img").unlink()
        pairs = [_pair(source, dirs, pki, size, work, ours_first=bool(i % 2)) for i in range(max(1, args.rounds))]
        rows: list[dict[str, object]] = [_median([cp_row for cp_row, _ in pairs]), _median([ours for _, ours in pairs])]
        if not args.skip_full:
            cpu = _cpu()
            seconds, wire = _full(source, pki)
            rows.append({"method": "upstream-style full copy (every byte over mTLS, discarded)", "seconds": seconds,
                         "wire": wire, "cpu": _cpu() - cpu})
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    text = _report(rows, size, data, pairs)
    print(text)
    stamp = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d-%H%M}"
    partial = "" if (args.size_gib, args.data_gib, args.skip_full) == (64, 2, False) else "-partial"
    (HERE / "results" / f"{stamp}-clone{partial}.md").write_text(text)
    (HERE / "results" / f"{stamp}-clone{partial}.json").write_text(json.dumps(
        {"rows": rows, "rounds": [list(pair) for pair in pairs]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
