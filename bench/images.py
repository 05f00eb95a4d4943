"""Builds the benchmark images once into a cache directory (reused while the sizes stay the same).

The data is made of random slices of the machine's own binaries and libraries, so it compresses and
inflates like a real disk (about 2.5:1 with deflate), not like random bytes (incompressible) or
zeros (trivial). One sparse raw disk (`data_mib` of data spread over `virtual_gib`) is the source of:
  disk.qcow2      qemu-img convert -O qcow2
  disk-c.qcow2    qemu-img convert -O qcow2 -c (deflate clusters, like distribution cloud images)
  disk.raw.xz     xz -0 -T2 (a fast preset)
  disk.raw.gz     gzip -1
  disk.vmdk       qemu-img convert -O vmdk (monolithicSparse: a format qemu-img needs random access for)
  sparse.qcow2    a separate `sparse_gib` image holding `sparse_data_mib` of data
Each file is made only if missing (written under a temporary name, then renamed), so adding an image
to the set does not rebuild the others. Used by `bench.__main__`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
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
NAMES = ("disk.qcow2", "disk-c.qcow2", "disk.raw.xz", "disk.raw.gz", "disk.vmdk", "sparse.qcow2")


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


def _make(path: Path, make: Callable[[Path], None]) -> None:
    """Run `make(tmp)` and rename tmp to `path`, unless `path` already exists."""
    if path.exists():
        return
    print(f"building {path.name}", flush=True)
    tmp = path.with_name(path.name + ".tmp")
    make(tmp)
    tmp.rename(path)


def _tool(*argv: str, stdout: bool = False) -> Callable[[Path], None]:
    """A command whose last argument (or, with `stdout`, whose output) is the file being made."""
    def make(out: Path) -> None:
        if stdout:
            with out.open("wb") as f:
                subprocess.run(argv, check=True, stdout=f)
        else:
            subprocess.run([*argv, str(out)], check=True)
    return make


def build(cache: Path, sizes: Sizes) -> Path:
    """Build (or reuse) the image set for `sizes`; returns its directory."""
    directory = cache / f"v{sizes.virtual_gib}g-d{sizes.data_mib}m-s{sizes.sparse_gib}g-{sizes.sparse_data_mib}m"
    directory.mkdir(parents=True, exist_ok=True)
    if all((directory / name).exists() for name in NAMES):
        return directory
    corpus = _corpus()
    raw = str(directory / "disk.raw")
    _make(directory / "disk.raw",
          lambda out: write_disk(out, sizes.virtual_gib << 30, sizes.data_mib * MiB, corpus, seed=1))
    _make(directory / "disk.qcow2", _tool("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw))
    _make(directory / "disk-c.qcow2", _tool("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", raw))
    _make(directory / "disk.raw.xz", _tool("xz", "-0", "-T2", "-c", raw, stdout=True))
    _make(directory / "disk.raw.gz", _tool("gzip", "-1", "-c", raw, stdout=True))
    _make(directory / "disk.vmdk", _tool("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                                         "subformat=monolithicSparse", raw))
    sparse_raw = directory / "sparse.raw"

    def sparse(out: Path) -> None:
        write_disk(sparse_raw, sizes.sparse_gib << 30, sizes.sparse_data_mib * MiB, corpus, seed=2)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(sparse_raw), str(out)], check=True)
        sparse_raw.unlink()

    _make(directory / "sparse.qcow2", sparse)
    (directory / "images.json").write_text(json.dumps(asdict(sizes)))
    return directory
