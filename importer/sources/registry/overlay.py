"""Which tar entries of which layer make up the image's final `/disk/` directory (pure).

The rule we enforce is the container-disk contract the seeds describe and upstream's node-pull server
checks: in the image's final filesystem, `/disk/` holds exactly one regular file. The final filesystem
is the layers stacked the OCI way: a path in a higher layer replaces the same path below; a whiteout
`.wh.<name>` deletes `<name>` from the layers below; an opaque marker `.wh..wh..opq` hides everything
below in its directory; a non-directory hides everything below under its path. Markers apply only to
lower layers, never to their own.

The layer walk feeds entries **top layer first**: by the time a lower layer is read, every higher
layer's replacements and whiteouts are known, so `classify` can say for certain whether an entry is
visible in the final image, and the first visible disk file can be streamed while it is being read.
Upstream instead extracts base-first and takes the first match, so a disk replaced or deleted by a later
layer would be imported stale, and extra files are ignored; we refuse those images with a clear error.

A restart point inside a layer (`importer.sources.registry.restart`) keeps the marks that layer made
before it (`layer_marks`), so a resumed walk classifies the rest of the layer and the layers below as
the first attempt would. Used by `importer.sources.registry.layers`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from enum import Enum

from importer.errors import InvalidImage

DISK_DIR = "disk"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class Kind(Enum):
    DIRECTORY = "directory"
    FILE = "regular file"
    OTHER = "link or special file"


@dataclass
class _Marks:
    present: set[str] = field(default_factory=set)  # paths with an entry (any kind)
    non_dirs: set[str] = field(default_factory=set)  # ... of which not directories
    whiteouts: set[str] = field(default_factory=set)  # paths deleted for the layers below
    opaque: set[str] = field(default_factory=set)  # directories whose lower contents are hidden

    def merge(self, other: _Marks) -> None:
        self.present |= other.present
        self.non_dirs |= other.non_dirs
        self.whiteouts |= other.whiteouts
        self.opaque |= other.opaque


def normalize(name: str) -> str:
    """The entry's path relative to the image root, as extraction would place it: "./disk/x" and
    "/disk/x" are "disk/x", and ".." cannot climb above the root."""
    return posixpath.normpath("/" + name).lstrip("/")


def _in_scope(path: str) -> bool:
    return path == DISK_DIR or path.startswith(DISK_DIR + "/")


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["", *("/".join(parts[:i]) for i in range(1, len(parts)))]


class OverlayView:
    """Knowledge of the layers above the one being read; `end_layer` moves down one layer."""

    def __init__(self) -> None:
        self._upper = _Marks()
        self._layer = _Marks()

    def layer_marks(self) -> dict[str, list[str]]:
        """What the layer being read has marked so far (all under /disk/), for a restart point inside it."""
        return {name: sorted(getattr(self._layer, name)) for name in ("present", "non_dirs", "whiteouts", "opaque")}

    def restore_layer(self, marks: dict[str, list[str]]) -> None:
        """Continue a layer from a restart point: its marks before the point, as `layer_marks` gave them."""
        self._layer = _Marks(*(set(marks.get(name, ())) for name in ("present", "non_dirs", "whiteouts", "opaque")))

    def end_layer(self) -> None:
        self._upper.merge(self._layer)
        self._layer = _Marks()

    def _hidden(self, path: str) -> bool:
        if path in self._upper.present or path in self._upper.whiteouts:
            return True
        return any(a in self._upper.whiteouts or a in self._upper.opaque or a in self._upper.non_dirs
                   for a in _ancestors(path))

    def _mark_whiteout(self, path: str) -> bool:
        parent, base = posixpath.split(path)
        if base == OPAQUE:
            if parent == "" or _in_scope(parent):
                self._layer.opaque.add(parent)
            return True
        if base.startswith(WHITEOUT):
            target = posixpath.join(parent, base[len(WHITEOUT):])
            if _in_scope(target):
                self._layer.whiteouts.add(target)
            return True
        return False

    def classify(self, name: str, kind: Kind, where: str) -> bool:
        """True if the entry is a disk file in the final image; raises for entries that break the
        one-file rule; False for everything else (outside /disk/, hidden, directories, markers)."""
        path = normalize(name)
        if self._mark_whiteout(path) or not _in_scope(path) or self._hidden(path):
            return False
        if kind is not Kind.DIRECTORY and path in self._layer.present:
            raise InvalidImage(f"/{path} appears twice in {where}; cannot tell which copy is the disk")
        self._layer.present.add(path)
        if kind is Kind.DIRECTORY:
            return False
        self._layer.non_dirs.add(path)
        if path == DISK_DIR:
            raise InvalidImage(f"/disk in {where} is a {kind.value}, not the directory holding the disk image")
        if path.count("/") > 1:
            raise InvalidImage(f"image directory contains another directory: /{path} in {where}; a container "
                               f"disk holds exactly one file directly in /disk/")
        if kind is Kind.OTHER:
            raise InvalidImage(f"/{path} in {where} is a {kind.value}, not a regular file; a container disk "
                               f"holds exactly one regular file in /disk/")
        return True
