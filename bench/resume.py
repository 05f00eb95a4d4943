"""`python -m bench.resume`: what a checkpointed import costs, and what resuming after a kill saves
(issue 15, part 1).

For each image (raw, gzip in 8 MiB members, gzip in a single member (restarted at DEFLATE block
boundaries, `importer.gzipblocks`), xz in 8 MiB blocks, zstd in 8 MiB frames, qcow2 from
`qemu-img convert` plain and with compressed clusters (`-c`); a disk of `--size` MiB, half of it data
sliced from the machine's own binaries, as `bench.images` builds them), served by nginx through a
throttling relay (`tests.support.shaper`, `--rate` MiB/s, which also counts every byte the
importer fetched), the real `cdi-importer` runs:

    no checkpoints    CDI_CHECKPOINT_INTERVAL=0: the import as it was before checkpoints
    checkpoints       every `--interval` MiB (default 64, as in pods) or 5 s: records written, and the
                      time syncing and writing them took
    killed at 50 %    SIGKILLed once the relay has sent half the image, then run again on the same
                      volume; time is both attempts' (a pod restart's own delay is not counted); a
                      qcow2 restart reads the image's tables again, which the bytes fetched include

Each case runs `--repeat` times (default 3) and each column keeps its fastest run (the machine is
shared). `--decode` adds, for the gzip images, decompression alone in this process, side by side per
round: Python's zlib (`zlib.decompressobj`, the member-boundary reader and fallback), the block-boundary
reader (`importer.gzipblocks` through ctypes), and the same asked for a boundary every `--interval` of
input as the checkpoint hook asks, with how many it found and how far apart they were (`bench.gzipdecode`).
Printed as ratios (checkpoints / none, killed / uninterrupted, bytes fetched / image size) and written to
`bench/results/<date>-resume.{md,json}`. No root needed; takes a few minutes.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import zstandard

from bench import gzipdecode
from bench.images import _corpus, write_disk
from tests.support.nginx import NginxServer
from tests.support.shaper import ShapedRelay
from tests.support.tls import make_pki

MiB = 1 << 20
MEMBER = 8 * MiB
RESULTS = Path(__file__).parent / "results"


@dataclass
class Attempt:
    seconds: float
    fetched: int
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0


@dataclass
class Row:
    image: str
    wire_bytes: int
    plain: Attempt
    checkpointed: Attempt
    resumed: Attempt
    resume_decision: str


def build_images(directory: Path, size: int) -> list[str]:
    raw = directory / "disk.raw"
    write_disk(raw, size, size // 2, _corpus(), seed=15)
    data = raw.read_bytes()
    (directory / "disk.raw.gz").write_bytes(b"".join(gzip.compress(data[i:i + MEMBER], 1)
                                                     for i in range(0, len(data), MEMBER)))
    (directory / "disk-single.raw.gz").write_bytes(gzip.compress(data, 1))
    compressor = zstandard.ZstdCompressor(level=3)
    (directory / "disk.raw.zst").write_bytes(b"".join(compressor.compress(data[i:i + MEMBER])
                                                      for i in range(0, len(data), MEMBER)))
    # One xz stream of 8 MiB blocks, as `xz -T` writes them (24 MiB blocks at its default level).
    subprocess.run(["xz", "-k", "-1", "-T2", f"--block-size={MEMBER}", str(raw)], check=True)
    # qcow2 as qemu-img writes it, and with compressed clusters (as cloud images are shipped).
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(directory / "disk.qcow2")],
                   check=True)
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw),
                    str(directory / "disk-compressed.qcow2")], check=True)
    return ["disk.raw", "disk.raw.gz", "disk-single.raw.gz", "disk.raw.xz", "disk.raw.zst", "disk.qcow2",
            "disk-compressed.qcow2"]


class Importer:
    def __init__(self, work: Path, url: str, relay: ShapedRelay, interval: int) -> None:
        self.interval = interval
        self.work = work
        self.url = url
        self.relay = relay

    def environ(self, data: Path, extra: dict[str, str]) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": self.url,
                "CDI_DATA_PATH": str(data), "CDI_TERMINATION_LOG": str(self.work / "termination"),
                "CDI_METRICS_ADDR": "127.0.0.1:0", "CDI_EXTRA_HEADERS_DIR": str(self.work / "none"),
                "IMPORTER_PROXY_CERT_DIR": str(self.work / "none"), "CDI_CHECKPOINT_INTERVAL": str(self.interval),
                **extra}

    def fresh_volume(self, name: str) -> Path:
        data = self.work / name
        subprocess.run(["rm", "-rf", str(data)], check=True)
        data.mkdir()
        return data

    def complete(self, data: Path, extra: dict[str, str]) -> tuple[Attempt, str]:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "importer"], env=self.environ(data, extra), capture_output=True,
                              text=True, check=False)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"import failed:\n{proc.stderr}")
        found = re.search(r"wrote (\d+) checkpoints in ([\d.]+) s", proc.stderr)
        message = json.loads((self.work / "termination").read_text())
        return (Attempt(seconds, self.relay.downstream, int(found[1]) if found else 0,
                        float(found[2]) if found else 0.0), message.get("resumeMessage", ""))

    def killed_at(self, data: Path, at: int) -> float:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "importer"], env=self.environ(data, {}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while self.relay.downstream < at:
            if proc.poll() is not None:
                raise SystemExit("the import finished before the kill: use a larger --size or a lower --rate")
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return time.monotonic() - started


def best(rows: list[Row]) -> Row:
    """Each column's fastest run (the machine is shared: the minimum is the least disturbed)."""
    fastest = {field: min((getattr(r, field) for r in rows), key=lambda a: a.seconds)
               for field in ("plain", "checkpointed", "resumed")}
    return Row(rows[0].image, rows[0].wire_bytes, fastest["plain"], fastest["checkpointed"], fastest["resumed"],
               rows[-1].resume_decision)


def measure(work: Path, server: NginxServer, name: str, rate: float, interval: int) -> Row:
    wire = (server.docroot / name).stat().st_size
    with ShapedRelay("127.0.0.1", server.ports.plain, rate=rate) as relay:
        importer = Importer(work, f"http://127.0.0.1:{relay.port}/{name}", relay, interval)
        relay.reset()
        plain, _ = importer.complete(importer.fresh_volume("plain"), {"CDI_CHECKPOINT_INTERVAL": "0"})
        relay.reset()
        checkpointed, _ = importer.complete(importer.fresh_volume("checkpointed"), {})
        relay.reset()
        volume = importer.fresh_volume("resumed")
        first = importer.killed_at(volume, wire // 2)
        second, decision = importer.complete(volume, {})
        resumed = Attempt(first + second.seconds, relay.downstream, second.checkpoints, second.checkpoint_seconds)
    return Row(name, wire, plain, checkpointed, resumed, decision)


def report(rows: list[Row], size: int, rate: float, interval: int, repeat: int) -> str:
    lines = [f"# Resume after a kill at 50 % ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; image {size // MiB} MiB "
             f"virtual (half data), link {rate / MiB:.0f} MiB/s through a throttling relay; checkpoints every "
             f"{interval // MiB} MiB or 5 s; fastest of {repeat} runs per column.", "",
             "| image | wire MiB | no checkpoints s | checkpoints s (ratio) | records, s syncing | killed + resumed s "
             "(ratio) | fetched / image (uninterrupted) | fetched / image (killed) | decision |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.image} | {r.wire_bytes / MiB:.0f} | {r.plain.seconds:.2f} | {r.checkpointed.seconds:.2f} "
            f"({r.checkpointed.seconds / r.plain.seconds:.3f}×) | {r.checkpointed.checkpoints}, "
            f"{r.checkpointed.checkpoint_seconds:.3f} | {r.resumed.seconds:.2f} "
            f"({r.resumed.seconds / r.checkpointed.seconds:.3f}×) | {r.checkpointed.fetched / r.wire_bytes:.3f}× "
            f"| {r.resumed.fetched / r.wire_bytes:.3f}× | {r.resume_decision} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="virtual size of the disk in MiB (default 1024)")
    parser.add_argument("--rate", type=float, default=100, help="link rate in MiB/s (default 100)")
    parser.add_argument("--interval", type=int, default=64, help="checkpoint interval in MiB (default 64, as in pods)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per image; each column keeps its fastest")
    parser.add_argument("--only", default="",
                        help="comma-separated image names (disk.raw, disk.raw.gz, disk-single.raw.gz, disk.raw.xz, "
                             "disk.raw.zst, disk.qcow2, disk-compressed.qcow2)")
    parser.add_argument("--decode", action="store_true",
                        help="also time gzip decompression alone: Python's zlib against the block-boundary reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdi-resume-bench-") as tmp:
        work = Path(tmp)
        (work / "images").mkdir()
        names = build_images(work / "images", args.size * MiB)
        if args.only:
            names = [n for n in names if n in args.only.split(",")]
        (work / "pki").mkdir()
        pki = make_pki(work / "pki")
        with NginxServer(work / "images", work / "nginx", pki) as server:
            rows = [best([measure(work, server, name, args.rate * MiB, args.interval * MiB)
                          for _ in range(args.repeat)]) for name in names]
        decoding = (gzipdecode.report([work / "images" / n for n in names if n.endswith(".gz")],
                                      args.interval * MiB, args.repeat) if args.decode else "")
    text = report(rows, args.size * MiB, args.rate * MiB, args.interval * MiB, args.repeat) + decoding
    print(text)
    RESULTS.mkdir(exist_ok=True)
    partial = args.only or args.size != 1024 or args.rate != 100 or args.interval != 64
    stem = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d-%H%M}-resume" + ("-partial" if partial else "")
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
