"""The typed catalogue of generated test images: what each file is and what it should import to.

Produced by `tests/support/images.py` (which calls the per-group generators in `disk_formats`,
`compression`, `archives` and `hostile`) and consumed by tests that serve or inspect the files.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


class Group(enum.StrEnum):
    """Why an image exists."""

    DISK = "disk"  # the reference content in a disk format qemu-img converts
    COMPRESSED = "compressed"  # a DISK image (or the ISO) behind gzip, xz or zstd
    ARCHIVE = "archive"  # benign tar files for the `archive` content type
    HOSTILE = "hostile"  # must be rejected: unsafe features, corruption, bombs, evil tar members
    TINY = "tiny"  # shorter than any format header (short and empty files)


class Compression(enum.StrEnum):
    GZIP = "gz"
    XZ = "xz"
    ZSTD = "zst"


@dataclass(frozen=True)
class Image:
    """One generated file.

    `qemu_format` is what qemu-img's probing says the file is, as stored (so "raw" for compressed
    files and tar archives). `content_sha256` and `virtual_size` describe the disk an importer should
    produce: the sha256 of `qemu-img convert -O raw` after any decompression; None when there is
    no such disk (archives, hostile and tiny files).
    """

    name: str
    path: Path
    group: Group
    qemu_format: str
    content_sha256: str | None = None
    virtual_size: int | None = None
    compression: Compression | None = None
    wraps: str | None = None  # for compressed files: the name of the image inside
    multi: bool = False  # several gzip members / xz streams / zstd frames
    note: str = ""


@dataclass(frozen=True)
class ImageSet:
    """All generated images of one directory, by name (the file name inside `directory`)."""

    directory: Path
    reference_sha256: str
    virtual_size: int
    images: Mapping[str, Image]
    archive_members: Mapping[str, bytes] = field(default_factory=dict)  # benign tar content
    iso_files: Mapping[str, bytes] = field(default_factory=dict)  # ISO 9660 content by path

    def __getitem__(self, name: str) -> Image:
        return self.images[name]

    def __iter__(self) -> Iterator[Image]:
        return iter(self.images.values())

    def path(self, name: str) -> Path:
        return self.images[name].path

    def group(self, group: Group) -> list[Image]:
        return [image for image in self.images.values() if image.group is group]


def sha256_file(path: Path, chunk_size: int = 4 * MiB) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
