"""Safe extraction of a tar stream into a Filesystem volume (content type `archive`).

Every member is checked before anything is written: no absolute names, no `..`, no symlink or
hardlink whose target leaves the volume, no device nodes or FIFOs, and nothing written through a
symlink. Members are extracted into a staging directory inside the volume and moved into place only
when the whole archive has been read, so a refused archive leaves nothing behind. Owners are not
restored and set-id bits are dropped (upstream runs GNU tar with `--no-same-owner`). The total size is
bounded by the space the volume had when the import began. Runs in the transfer thread, called by
`importer.transfer`.

Checkpoints (`importer.archivecheckpoint`): regular files are written here, chunk by chunk, so that
after each chunk and at each member's header the extraction can be recorded and taken up again. A
resumed extraction keeps the staging directory, truncates the file being written at the record to
its recorded length (or, at a header, extracts the next member again over whatever the killed attempt
left of it and of the members after it: each member replaces what is at its name), and reads on with
the same checks; what a member may do depends only on the staging directory as it is on disk, which
the record's sync made durable. A failure that keeps its record for a restart (a retryable one after a
record) keeps the staging directory too. The record is cleared before the entries are moved into
place, so an attempt killed during the move is started over (the moved entries are replaced then).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from importer.archivecheckpoint import ArchiveCheckpoints
from importer.archivestate import ArchiveState
from importer.archivestream import TarStream
from importer.errors import ImageTooLarge, ImportFailure, InvalidImage, UnsafeArchive
from importer.formats import PrefixReader
from importer.reader import Reader

log = logging.getLogger(__name__)

STAGING_NAME = ".cdi-archive-staging"
CHUNK = 1 << 20  # bytes of a regular file written between checkpoint chances
# Members are checked by `_check_member` before extraction; tell Pythons that know about extraction
# filters (PEP 706) not to apply a second, differently-worded policy.
_TRUSTED: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


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




def extract_tar(reader: Reader, data_dir: Path, available: int, checkpoints: ArchiveCheckpoints | None = None,
                resume: ArchiveState | None = None) -> int:
    """Extract the stream into `data_dir`; returns the bytes of regular-file content written. With
    `resume`, `reader` continues the decoded stream where that record's decoder stopped."""
    staging = data_dir / STAGING_NAME
    if resume is None or not staging.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o750)
    root = Path(os.path.realpath(staging))
    if checkpoints is not None:
        checkpoints.root = root
    state = replace(resume, tar_carry=b"") if resume is not None else ArchiveState(available)
    source = PrefixReader(resume.tar_carry, reader) if resume is not None else reader
    extraction = _Extraction(root, TarStream(source, state.tar_offset), state, checkpoints)
    try:
        try:
            extraction.run(resumed=resume is not None)
        except tarfile.TarError as e:
            raise InvalidImage(f"unable to untar files from endpoint: {e}") from e
        if checkpoints is not None:  # first: a restart must not continue a staging directory half moved out
            checkpoints.finished()
        _move_into_place(root, data_dir)
    except BaseException as e:
        if not _kept_for_restart(e, checkpoints, resume):
            shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return state.used


def _kept_for_restart(error: BaseException, checkpoints: ArchiveCheckpoints | None, resume: ArchiveState | None
                      ) -> bool:
    """As `importer.pipeline` keeps the record: a retryable failure after a record was taken."""
    if checkpoints is None or not isinstance(error, ImportFailure) or not error.retryable:
        return False
    return checkpoints.saved > 0 or resume is not None


class _Extraction:
    """One pass over the tar stream, from its start or from a record's mark."""

    def __init__(self, root: Path, stream: TarStream, state: ArchiveState,
                 checkpoints: ArchiveCheckpoints | None) -> None:
        self._root = root
        self._stream = stream
        self._state = state
        self._marked = replace(state)
        self._checkpoints = checkpoints
        self._global_headers = False
        if checkpoints is not None:
            stream.on_piece = self._offer

    def run(self, *, resumed: bool) -> None:
        state = self._state
        if resumed:
            log.info("continuing the archive at tar byte %d: %d members extracted%s", state.tar_offset,
                     state.members, f", {state.file!r} has {state.file_written} of {state.file_size} bytes"
                     if state.file is not None else "")
        if state.file is not None:
            self._continue_file()
        self._at_header(self._stream.tell() if state.file is None else state.next_header)
        archive = tarfile.TarFile(fileobj=self._stream, mode="r")  # type: ignore[arg-type]
        while (member := archive.next()) is not None:
            # a global pax header changes how later members read, and a restart would not see it again
            self._global_headers = self._global_headers or bool(archive.pax_headers)
            self._extract(archive, member)
            self._at_header(archive.offset)

    def _offer(self) -> None:
        carry = self._stream.carry
        if self._checkpoints is None or self._global_headers or carry is None:
            return
        marked = self._marked
        self._checkpoints.offer(lambda: replace(marked, tar_carry=carry), self._stream.tell())

    def _mark(self) -> None:
        self._stream.mark()
        self._marked = replace(self._state)
        self._offer()

    def _at_header(self, offset: int) -> None:
        self._stream.seek(offset)
        self._state.tar_offset, self._state.file = offset, None
        self._mark()

    def _extract(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _check_member(member, self._root)
        if name == ".":
            return
        state = self._state
        state.used += member.size if member.isfile() else 0
        if state.used > state.available:
            raise ImageTooLarge(f"archive content is larger than the reported available storage "
                                f"{state.available}. A larger PVC is required")
        member.name = name
        member.mode &= 0o777
        member.uid, member.gid = os.getuid(), os.getgid()
        member.uname = member.gname = ""
        if member.isfile() and member.sparse is None:
            self._write_file(member)
        else:
            archive.extract(member, self._root, set_attrs=not member.issym(), numeric_owner=True, **_TRUSTED)
        state.members += 1

    def _write_file(self, member: tarfile.TarInfo) -> None:
        path = self._root / member.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        state = self._state
        state.file, state.file_size, state.file_written = member.name, member.size, 0
        state.file_mode, state.file_mtime, state.data_offset = member.mode, float(member.mtime), member.offset_data
        self._stream.seek(member.offset_data)
        self._copy(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))

    def _continue_file(self) -> None:
        """The record was taken inside a regular file: cut it back to what the record covers."""
        state = self._state
        assert state.file is not None
        name = _safe_name(state.file)
        parent = Path(os.path.realpath((self._root / name).parent))
        if parent != self._root and self._root not in parent.parents:
            raise UnsafeArchive(f"the checkpoint's file {name!r} would be written outside the target directory")
        fd = os.open(self._root / name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.ftruncate(fd, state.file_written)
        os.lseek(fd, state.file_written, os.SEEK_SET)
        self._copy(fd)

    def _copy(self, fd: int) -> None:
        """The rest of the current file's data, marking after each chunk; then its mode and mtime."""
        state = self._state
        try:
            while state.file_written < state.file_size:
                piece = self._stream.read_some(min(CHUNK, state.file_size - state.file_written))
                if not piece:
                    raise tarfile.ReadError("unexpected end of data")
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
                state.file_written += len(piece)
                state.tar_offset = state.data_offset + state.file_written
                self._mark()
            os.fchmod(fd, state.file_mode)
            os.utime(fd, (state.file_mtime, state.file_mtime))
        finally:
            os.close(fd)


def _move_into_place(staging: Path, data_dir: Path) -> None:
    for entry in staging.iterdir():
        destination = data_dir / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        os.replace(entry, destination)
