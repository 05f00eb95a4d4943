"""Builds the benchmark images once into a cache directory (reused while the sizes stay the same).

The data is made of random slices of the machine's own binaries and libraries, so it compresses and
inflates like a real disk (about 2.5:1 with deflate), not like random bytes (incompressible) or
zeros (trivial). One sparse raw disk (`data_mib` of data spread over `virtual_gib`) is the source of:
  disk.qcow2      qemu-img convert -O qcow2
  disk-c.qcow2    qemu-img convert -O qcow2 -c (deflate clusters, like distribution cloud images)
  disk.raw.xz     xz -0 -T2 (a fast preset)
  disk.raw.gz     gzip -1
  sparse.qcow2    a separate `sparse_gib` image holding `sparse_data_mib` of data
Used by `bench.__main__`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MiB = 1 << 20
_CORPUS_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib/python3", "/usr/share/doc")


@dataclass(frozen=True)
class Sizes:
    virtual_gib: int
    data_mib: int
    sparse_gib: int
    sparse_data_mib: int


FULL = Sizes(virtual_gib=4, data_mib=600, sparse_gib=64, sparse_data_mib=200)
QUICK = Sizes(virtual_gib=1, data_mib=96, sparse_gib=16, sparse_data_mib=48)
NAMES = ("disk.qcow2", "disk-c.qcow2", "disk.raw.xz", "disk.raw.gz", "sparse.qcow2")


def _corpus(limit: int = 48 * MiB) -> bytes:
    parts, total = [], 0
    for top in _CORPUS_DIRS:
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                with path.open("rb") as f:
                    parts.append(f.read(4 * MiB))
                total += len(parts[-1])
                if total >= limit:
                    return b"".join(parts)
    return b"".join(parts)


def _data(rng: random.Random, corpus: bytes, length: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        start = rng.randrange(0, len(corpus) - 65536)
        out += corpus[start:start + rng.randint(512, 65536)]
    return bytes(out[:length])


def write_disk(path: Path, virtual: int, data: int, corpus: bytes, seed: int) -> None:
    """`data` bytes in 8 MiB extents spread evenly over a sparse raw disk of `virtual` bytes."""
    rng = random.Random(seed)
    extents = max(1, data // (8 * MiB))
    stride = virtual // extents // MiB * MiB
    with path.open("wb") as f:
        f.truncate(virtual)
        for index in range(extents):
            f.seek(index * stride)
            f.write(_data(rng, corpus, min(8 * MiB, data - index * 8 * MiB)))


def _run(*argv: str, stdout: Path | None = None) -> None:
    if stdout is None:
        subprocess.run(argv, check=True)
        return
    with stdout.open("wb") as out:
        subprocess.run(argv, check=True, stdout=out)


def build(cache: Path, sizes: Sizes) -> Path:
    """Build (or reuse) the image set for `sizes`; returns its directory."""
    directory = cache / f"v{sizes.virtual_gib}g-d{sizes.data_mib}m-s{sizes.sparse_gib}g-{sizes.sparse_data_mib}m"
    stamp = directory / "images.json"
    if stamp.exists() and all((directory / name).exists() for name in NAMES):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    print(f"building images into {directory} (once)", flush=True)
    corpus = _corpus()
    raw = directory / "disk.raw"
    write_disk(raw, sizes.virtual_gib << 30, sizes.data_mib * MiB, corpus, seed=1)
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(directory / "disk.qcow2"))
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(directory / "disk-c.qcow2"))
    _run("xz", "-0", "-T2", "-c", str(raw), stdout=directory / "disk.raw.xz")
    _run("gzip", "-1", "-c", str(raw), stdout=directory / "disk.raw.gz")
    sparse_raw = directory / "sparse.raw"
    write_disk(sparse_raw, sizes.sparse_gib << 30, sizes.sparse_data_mib * MiB, corpus, seed=2)
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(sparse_raw), str(directory / "sparse.qcow2"))
    sparse_raw.unlink()
    stamp.write_text(json.dumps(asdict(sizes)))
    return directory
