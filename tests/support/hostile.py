"""Images an importer must refuse: unsafe qcow2 features, encryption, corruption and a bomb.

Each builder creates one file with real `qemu-img` (or by editing a qcow2 header) and returns its
catalogue entry; `tests/support/images.py` runs them in parallel. `independent_builders` need
nothing; `derived_builders` start from the reference qcow2 written by `disk_formats`.
"""

from __future__ import annotations

import functools
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from tests.support.catalog import GiB, Group, Image, MiB
from tests.support.compression import write_xz_bomb
from tests.support.qemu import QemuImgError, qemu_img

Builder = Callable[[], list[Image]]

LUKS_SECRET = "pycdi-secret"
BACKING_NAME = "base.raw"
DATA_FILE_NAME = "datafile.data"
HUGE_VIRTUAL_SIZE = 100 * GiB
BOMB_SIZE = GiB
TRUNCATED_LENGTH = 384 * 1024  # header, refcount and L1 tables survive; every data cluster is gone
_QCOW2_L1_SIZE_OFFSET = 36  # big-endian u32 in the qcow2 header
_QCOW2_HEADER_LENGTH_OFFSET = 100  # v3: where the header extensions start
_QCOW2_FDE_EXTENSION = 0x0537BE77  # full disk encryption header pointer: u64 offset, u64 length
_SMALL = str(16 * MiB)
# qemu's LUKS key set-up benchmarks PBKDF2 for about a second per key whatever iter-time says
# (iter-time only keeps opening the image cheap), so only one LUKS header is ever created.
_SECRET_OBJECT = ("--object", f"secret,id=sec0,data={LUKS_SECRET}")


def _hostile(directory: Path, name: str, qemu_format: str, note: str, size: int | None = None) -> Image:
    return Image(
        name=name, path=directory / name, group=Group.HOSTILE, qemu_format=qemu_format, virtual_size=size, note=note
    )


def _backing(directory: Path) -> list[Image]:
    qemu_img(["create", "-f", "raw", directory / BACKING_NAME, str(MiB)])
    qemu_img(["create", "-f", "qcow2", "-b", BACKING_NAME, "-F", "raw", directory / "backing.qcow2", _SMALL])
    return [_hostile(directory, "backing.qcow2", "qcow2", f"backing-filename {BACKING_NAME} (raw)", 16 * MiB)]


def _data_file(directory: Path) -> list[Image]:
    # qemu-img creates a relative data file in its working directory and records the name as given
    # (qemu 7.2 then resolves it against the opener's working directory, not the image's).
    qemu_img(["create", "-f", "qcow2", "-o", f"data_file={DATA_FILE_NAME}", "datafile.qcow2", _SMALL], cwd=directory)
    return [_hostile(directory, "datafile.qcow2", "qcow2", f"external data file {DATA_FILE_NAME}", 16 * MiB)]


def _encrypted(directory: Path) -> list[Image]:
    """LUKS inside qcow2 from qemu-img, and a standalone LUKS volume sharing its header.

    qemu reserves exactly the LUKS header area (up to the payload offset) inside the qcow2 and
    points at it with the full-disk-encryption header extension, so that area followed by a zero
    payload is a valid standalone LUKS volume. Copying it saves a second key set-up.
    """
    qcow2 = directory / "luks.qcow2"
    argv = ["create", *_SECRET_OBJECT, "-f", "qcow2", "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200", qcow2, _SMALL]
    for attempt in range(3):
        # qemu times its PBKDF2 benchmark with CPU time; on a loaded machine it can fail with "Unable to
        # get accurate CPU usage", which is the machine's state, not the image's.
        try:
            qemu_img(argv)
            break
        except QemuImgError:
            qcow2.unlink(missing_ok=True)
            if attempt == 2:
                raise
    header = _luks_header_of(qcow2.read_bytes())
    with open(directory / "disk.luks", "wb") as target:
        target.write(header)
        target.truncate(len(header) + 16 * MiB)
    return [
        _hostile(directory, "luks.qcow2", "qcow2", "LUKS-encrypted qcow2 (encrypted: true)", 16 * MiB),
        _hostile(directory, "disk.luks", "luks", "standalone LUKS volume (encrypted: true)", 16 * MiB),
    ]


def _luks_header_of(qcow2: bytes) -> bytes:
    """The LUKS header area a qcow2 points at through its header extensions (qcow2 v3 layout)."""
    (offset,) = struct.unpack_from(">I", qcow2, _QCOW2_HEADER_LENGTH_OFFSET)
    while True:
        kind, length = struct.unpack_from(">II", qcow2, offset)
        if kind == 0:
            raise ValueError("qcow2 has no full-disk-encryption header extension")
        if kind == _QCOW2_FDE_EXTENSION:
            start, size = struct.unpack_from(">QQ", qcow2, offset + 8)
            return qcow2[start : start + size]
        offset += 8 + (length + 7) // 8 * 8


def _qcow_v1(directory: Path) -> list[Image]:
    qemu_img(["create", "-f", "qcow", directory / "v1.qcow", _SMALL])
    return [_hostile(directory, "v1.qcow", "qcow", "legacy qcow version 1", 16 * MiB)]


def _bomb(directory: Path) -> list[Image]:
    write_xz_bomb(directory / "bomb.raw.xz", BOMB_SIZE)
    return [_hostile(directory, "bomb.raw.xz", "raw", "xz expanding to 1 GiB of zeros", BOMB_SIZE)]


def independent_builders(directory: Path) -> list[Builder]:
    """Builders needing no other image; the LUKS one (first) takes a few seconds."""
    makers = (_encrypted, _backing, _data_file, _qcow_v1, _bomb)
    return [functools.partial(maker, directory) for maker in makers]


def _truncated(directory: Path, qcow2: Path) -> list[Image]:
    with open(qcow2, "rb") as source, open(directory / "truncated.qcow2", "wb") as target:
        target.write(source.read(TRUNCATED_LENGTH))
    note = "data clusters cut off: info succeeds, `qemu-img check` exits 2"
    return [_hostile(directory, "truncated.qcow2", "qcow2", note)]


def _corrupt_header(directory: Path, qcow2: Path) -> list[Image]:
    header = bytearray(qcow2.read_bytes())
    struct.pack_into(">I", header, _QCOW2_L1_SIZE_OFFSET, 0x7FFFFFFF)
    (directory / "corrupt-header.qcow2").write_bytes(header)
    note = "l1_size 0x7fffffff: qemu-img fails with 'Active L1 table too large'"
    return [_hostile(directory, "corrupt-header.qcow2", "qcow2", note)]


def _huge(directory: Path, qcow2: Path) -> list[Image]:
    target = directory / "huge.qcow2"
    shutil.copyfile(qcow2, target)
    qemu_img(["resize", "-f", "qcow2", target, str(HUGE_VIRTUAL_SIZE)])
    note = "100 GiB virtual size, a few MiB of data"
    return [_hostile(directory, "huge.qcow2", "qcow2", note, HUGE_VIRTUAL_SIZE)]


def derived_builders(directory: Path, qcow2: Path) -> list[Builder]:
    """Builders that start from the reference qcow2."""
    return [functools.partial(maker, directory, qcow2) for maker in (_truncated, _corrupt_header, _huge)]
