"""Tar archives for the `archive` content type: a benign one and members that must be refused.

`write_benign_tar` writes regular files and directories (plain and gzip-compressed);
`write_evil_tars` writes one archive per attack. `tests/support/images.py` catalogues them.

Deliberate difference from a textbook attack: the write-through-symlink archive points its link at
`../pycdi-escaped` (outside the extraction directory, but inside the test's tmp dir) rather than at
`/etc/passwd`, so a vulnerable extractor run as root in a test cannot damage the host; tests
assert the escaped file does not appear. The symlink to `/etc/passwd` exists on its own.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

ESCAPED_NAME = "pycdi-escaped"  # what the write-through-symlink archive tries to create next to the target dir


def benign_members() -> dict[str, bytes]:
    """Regular files of the benign archive, by member path."""
    return {
        "README.txt": b"pycdi archive test\n",
        "data/blob.bin": hashlib.shake_256(b"pycdi tar blob").digest(300 * 1024),
        "data/nested/empty": b"",
    }


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    info.mode = 0o755 if kind in (tarfile.DIRTYPE, tarfile.SYMTYPE) else 0o644
    info.mtime = 1_700_000_000
    info.uname = info.gname = "root"
    return info


def _add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    archive.addfile(_info(name, size=len(data)), io.BytesIO(data))


def write_benign_tar(path: Path, members: Mapping[str, bytes], *, gzip: bool = False) -> None:
    directories = sorted({str(Path(name).parent) for name in members} - {"."})
    with tarfile.open(path, "w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as archive:
        for directory in directories:
            archive.addfile(_info(directory, tarfile.DIRTYPE))
        for name, data in members.items():
            _add_file(archive, name, data)


def _evil(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_file(archive, "ok.txt", b"harmless member before the evil one\n")
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data else None)


def write_evil_tars(directory: Path) -> dict[str, str]:
    """Write one archive per attack into `directory`; return file name -> description."""
    evil = b"evil\n"
    specs: dict[str, tuple[str, tuple[tuple[tarfile.TarInfo, bytes], ...]]] = {
        "evil-dotdot.tar": ("member ../evil escapes the target directory", ((_info("../evil", size=len(evil)), evil),)),
        "evil-absolute.tar": ("member with absolute path /etc/evil", ((_info("/etc/evil", size=len(evil)), evil),)),
        "evil-symlink.tar": (
            "symlink link -> /etc/passwd pointing outside",
            ((_info("link", tarfile.SYMTYPE, linkname="/etc/passwd"), b""),),
        ),
        "evil-symlink-write.tar": (
            f"symlink link -> ../{ESCAPED_NAME}, then a regular file 'link' written through it",
            (
                (_info("link", tarfile.SYMTYPE, linkname=f"../{ESCAPED_NAME}"), b""),
                (_info("link", size=len(evil)), evil),
            ),
        ),
        "evil-hardlink.tar": (
            "hard link to /etc/passwd outside the archive",
            ((_info("hard", tarfile.LNKTYPE, linkname="/etc/passwd"), b""),),
        ),
        "evil-device.tar": ("character device node (1,3) like /dev/null", ((_device("null"), b""),)),
    }
    for name, (_, members) in specs.items():
        _evil(directory / name, *members)
    return {name: description for name, (description, _) in specs.items()}


def _device(name: str) -> tarfile.TarInfo:
    info = _info(name, tarfile.CHRTYPE)
    info.devmajor, info.devminor = 1, 3
    info.mode = 0o666
    return info
