"""Safe extraction of a tar stream into a Filesystem volume (content type `archive`).

Every member is checked before anything is written: no absolute names, no `..`, no symlink or
hardlink whose target leaves the volume, no device nodes or FIFOs, and nothing written through a
symlink. Members are extracted into a staging directory inside the volume and moved into place only
when the whole archive has been read, so a refused archive leaves nothing behind. Owners are not
restored and set-id bits are dropped (upstream runs GNU tar with `--no-same-owner`). The total size is
bounded by the space the volume has. Runs in the transfer thread, called by `importer.transfer`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path

from importer.errors import ImageTooLarge, InvalidImage, UnsafeArchive
from importer.reader import Reader

STAGING_NAME = ".cdi-archive-staging"
# Members are checked by `_check_member` before extraction; tell Pythons that know about extraction
# filters (PEP 706) not to apply a second, differently-worded policy.
_TRUSTED: dict[str, str] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def _safe_name(name: str) -> str:
    if name.startswith(("/", "\\")):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UnsafeArchive(f"archive member {name!r} escapes the target directory")
    return normal


def _check_link(member: tarfile.TarInfo, name: str) -> None:
    target = member.linkname
    if target.startswith("/"):
        raise UnsafeArchive(f"archive member {member.name!r} links to an absolute path {target!r}")
    base = posixpath.dirname(name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(f"archive member {member.name!r} links outside the target directory ({target!r})")


def _check_member(member: tarfile.TarInfo, root: Path) -> str:
    name = _safe_name(member.name)
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"archive member {member.name!r} is a device or FIFO, which a volume must not hold")
    if member.issym() or member.islnk():
        _check_link(member, name)
    parent = (root / name).parent
    real_parent = Path(os.path.realpath(parent))
    if real_parent != root and root not in real_parent.parents:
        raise UnsafeArchive(f"archive member {member.name!r} would be written through a link outside the "
                            f"target directory")
    return name


def extract_tar(reader: Reader, data_dir: Path, available: int) -> int:
    """Extract the stream into `data_dir`; returns the bytes of regular-file content written."""
    staging = data_dir / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o750)
    root = Path(os.path.realpath(staging))
    total = 0
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                name = _check_member(member, root)
                if name == ".":
                    continue
                total += member.size if member.isfile() else 0
                if total > available:
                    raise ImageTooLarge(f"archive content is larger than the reported available storage "
                                        f"{available}. A larger PVC is required")
                member.name = name
                member.mode &= 0o777
                member.uid, member.gid = os.getuid(), os.getgid()
                member.uname = member.gname = ""
                archive.extract(member, root, set_attrs=not member.issym(), numeric_owner=True, **_TRUSTED)
        _move_into_place(root, data_dir)
    except tarfile.TarError as e:
        raise InvalidImage(f"unable to untar files from endpoint: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return total


def _move_into_place(staging: Path, data_dir: Path) -> None:
    for entry in staging.iterdir():
        destination = data_dir / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        os.replace(entry, destination)
