"""The reference disk and its copies in every disk format the importer converts.

`write_reference_raw` writes a sparse raw disk with recognisable data in three regions and holes
elsewhere; `convert_jobs` lists the real `qemu-img convert` runs that turn it into qcow2, vmdk, vdi,
vhd and vhdx; `write_iso` builds an ISO 9660 image in pure Python. `tests/support/images.py` runs
the jobs and records the results in the catalogue.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pycdlib

from tests.support.catalog import MiB

SECTOR = 512
_SEED = b"pycdi reference disk"
_TILE = 4096  # small enough to repeat inside one deflate window and one qcow2 cluster


@dataclass(frozen=True)
class ConvertJob:
    """One `qemu-img convert` from the reference raw disk to `name`."""

    name: str
    qemu_format: str
    options: tuple[str, ...] = ()
    note: str = ""

    def argv(self, source: Path, directory: Path) -> list[str]:
        return ["convert", "-f", "raw", "-O", self.qemu_format, *self.options, str(source), str(directory / self.name)]


# vpc: force_size keeps the exact virtual size; without it qemu rounds up to a CHS geometry and
# the converted-back content would no longer match the reference sha256.
CONVERT_JOBS: tuple[ConvertJob, ...] = (
    ConvertJob("disk.qcow2", "qcow2"),
    ConvertJob("disk-compressed.qcow2", "qcow2", ("-c",), "zlib-compressed clusters"),
    ConvertJob("disk.vmdk", "vmdk", ("-o", "subformat=monolithicSparse")),
    ConvertJob("disk-stream.vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    ConvertJob("disk.vdi", "vdi"),
    ConvertJob("disk.vhd", "vpc", ("-o", "subformat=dynamic,force_size=on"), "dynamic VHD"),
    ConvertJob("disk.vhdx", "vhdx"),
)


def data_regions(virtual_size: int) -> tuple[tuple[int, int], ...]:
    """(offset, length) of the non-zero regions: the first MiB, a MiB in the middle, the last 64 KiB."""
    if virtual_size < 4 * MiB or virtual_size % MiB:
        raise ValueError(f"reference size must be a whole number of MiB, at least 4 MiB: {virtual_size}")
    middle = (virtual_size // 2) // MiB * MiB
    return ((0, MiB), (middle, MiB), (virtual_size - 64 * 1024, 64 * 1024))


def _region_bytes(offset: int, length: int) -> bytes:
    """A tiled 4 KiB pseudo-random pattern, each sector stamped with its own number.

    The stamps make every sector unique (a misplaced block changes the checksum) and easy to spot
    in a hex dump; the tiling keeps the data compressible, so compressors run fast and qcow2's
    `-c` really stores compressed clusters (qemu keeps incompressible clusters uncompressed).
    """
    tile = hashlib.shake_256(_SEED).digest(_TILE)
    data = bytearray((tile * (length // _TILE + 1))[:length])
    for start in range(0, length, SECTOR):
        stamp = b"PYCDI sector %012d\n" % ((offset + start) // SECTOR)
        data[start : start + len(stamp)] = stamp
    return bytes(data)


def write_reference_raw(path: Path, virtual_size: int) -> str:
    """Write the sparse reference disk and return its sha256 (holes hash as zeros)."""
    regions = data_regions(virtual_size)
    digest = hashlib.sha256()
    position = 0
    with open(path, "wb") as target:
        target.truncate(virtual_size)
        for offset, length in regions:
            _hash_zeros(digest, offset - position)
            data = _region_bytes(offset, length)
            target.seek(offset)
            target.write(data)
            digest.update(data)
            position = offset + length
    _hash_zeros(digest, virtual_size - position)
    return digest.hexdigest()


def _hash_zeros(digest: hashlib._Hash, count: int) -> None:
    zeros = bytes(min(count, 4 * MiB))
    while count > 0:
        step = min(count, len(zeros))
        digest.update(zeros[:step])
        count -= step


def iso_contents() -> dict[str, bytes]:
    """The files placed on the test ISO, by path."""
    return {
        "/README.TXT": b"pycdi test ISO image\n",
        "/DATA/BLOB.BIN": hashlib.shake_256(b"pycdi iso blob").digest(200 * 1024),
    }


def write_iso(path: Path, files: Mapping[str, bytes]) -> None:
    """An ISO 9660 image (with Joliet and Rock Ridge names) holding `files`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="PYCDI_TEST")
    directories: set[str] = set()
    for name, data in files.items():
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts)):
            directory = "/" + "/".join(parts[:depth])
            if directory not in directories:
                directories.add(directory)
                iso.add_directory(directory, rr_name=parts[depth - 1], joliet_path=directory.lower())
        iso.add_fp(io.BytesIO(data), len(data), f"{name};1", rr_name=parts[-1].lower(), joliet_path=name.lower())
    iso.write(str(path))
    iso.close()
