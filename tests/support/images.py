"""Generate the whole set of test images into one directory, in parallel, in a few seconds.

One function per group (`make_reference`, `make_disk_formats`, `make_iso`, `make_compressed`,
`make_archives`, `make_hostile`, `make_tiny`) for tests that want only part of the set;
`make_image_set` builds everything, overlapping the slow qemu-img runs (LUKS key setup) with the
rest. The per-group details live in `disk_formats`, `compression`, `archives` and `hostile`; the
result is the typed catalogue of `catalog`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tests.support import archives, disk_formats, hostile
from tests.support.catalog import Compression, Group, Image, ImageSet, MiB, sha256_file
from tests.support.compression import compress_file
from tests.support.qemu import qemu_img

__all__ = [
    "DEFAULT_VIRTUAL_SIZE",
    "Compression",
    "Group",
    "Image",
    "ImageSet",
    "make_archives",
    "make_compressed",
    "make_disk_formats",
    "make_hostile",
    "make_image_set",
    "make_iso",
    "make_reference",
    "make_tiny",
]

DEFAULT_VIRTUAL_SIZE = 64 * MiB
COMPRESSED_SOURCES = ("disk.raw", "disk.qcow2", "cdrom.iso")
SHORT_LENGTH = 300  # shorter than any disk-format header

Builder = Callable[[], Image]
T = TypeVar("T")


def make_reference(directory: Path, virtual_size: int = DEFAULT_VIRTUAL_SIZE) -> Image:
    """The sparse reference raw disk `disk.raw`; every DISK image converts back to its bytes."""
    path = directory / "disk.raw"
    sha256 = disk_formats.write_reference_raw(path, virtual_size)
    return Image(
        name=path.name,
        path=path,
        group=Group.DISK,
        qemu_format="raw",
        content_sha256=sha256,
        virtual_size=virtual_size,
        note="reference",
    )


def _convert(directory: Path, reference: Image, job: disk_formats.ConvertJob) -> Image:
    qemu_img(job.argv(reference.path, directory))
    return Image(
        name=job.name,
        path=directory / job.name,
        group=Group.DISK,
        qemu_format=job.qemu_format,
        content_sha256=reference.content_sha256,
        virtual_size=reference.virtual_size,
        note=job.note,
    )


def _convert_builders(directory: Path, reference: Image) -> list[Builder]:
    return [functools.partial(_convert, directory, reference, job) for job in disk_formats.CONVERT_JOBS]


def make_iso(directory: Path) -> Image:
    """`cdrom.iso`, an ISO 9660 image holding `disk_formats.iso_contents()`."""
    path = directory / "cdrom.iso"
    disk_formats.write_iso(path, disk_formats.iso_contents())
    return Image(
        name=path.name,
        path=path,
        group=Group.DISK,
        qemu_format="raw",
        content_sha256=sha256_file(path),
        virtual_size=path.stat().st_size,
        note="ISO 9660",
    )


def _compress(directory: Path, source: Image, codec: Compression, multi: bool) -> Image:
    stem, _, suffix = source.name.partition(".")
    name = f"{stem}{'-multi' if multi else ''}.{suffix}.{codec}"
    compress_file(source.path, directory / name, codec, members=2 if multi else 1)
    kind = {Compression.GZIP: "gzip members", Compression.XZ: "xz streams", Compression.ZSTD: "zstd frames"}
    return Image(
        name=name,
        path=directory / name,
        group=Group.COMPRESSED,
        qemu_format="raw",
        content_sha256=source.content_sha256,
        virtual_size=source.virtual_size,
        compression=codec,
        wraps=source.name,
        multi=multi,
        note=f"two concatenated {kind[codec]}" if multi else "",
    )


def _compress_builders(directory: Path, sources: Iterable[Image]) -> list[Builder]:
    return [
        functools.partial(_compress, directory, source, codec, multi)
        for source in sources
        for codec in Compression
        for multi in (False, True)
    ]


def make_archives(directory: Path) -> list[Image]:
    """Benign `files.tar` and `files.tar.gz`, and one `evil-*.tar` per extraction attack."""
    members = archives.benign_members()
    archives.write_benign_tar(directory / "files.tar", members)
    archives.write_benign_tar(directory / "files.tar.gz", members, gzip=True)
    made = [
        Image(name="files.tar", path=directory / "files.tar", group=Group.ARCHIVE, qemu_format="raw"),
        Image(
            name="files.tar.gz",
            path=directory / "files.tar.gz",
            group=Group.ARCHIVE,
            qemu_format="raw",
            compression=Compression.GZIP,
            wraps="files.tar",
        ),
    ]
    for name, description in archives.write_evil_tars(directory).items():
        made.append(Image(name=name, path=directory / name, group=Group.HOSTILE, qemu_format="raw", note=description))
    return made


def make_tiny(directory: Path) -> list[Image]:
    """`short.bin` (shorter than any header) and `empty.bin`."""
    (directory / "short.bin").write_bytes(b"pycdi short file\n".ljust(SHORT_LENGTH, b"."))
    (directory / "empty.bin").write_bytes(b"")
    return [
        Image(name=name, path=directory / name, group=Group.TINY, qemu_format="raw", virtual_size=size)
        for name, size in (("short.bin", SHORT_LENGTH), ("empty.bin", 0))
    ]


def _run(pool: Executor, builders: Iterable[Callable[[], T]]) -> list[Future[T]]:
    return [pool.submit(builder) for builder in builders]


def _results(futures: Sequence[Future[T]]) -> list[T]:
    return [future.result() for future in futures]


def _flat(futures: Sequence[Future[list[Image]]]) -> list[Image]:
    return [image for images in _results(futures) for image in images]


def make_disk_formats(directory: Path, reference: Image) -> list[Image]:
    """The reference converted by qemu-img to qcow2 (plain and compressed), vmdk, vdi, vhd, vhdx."""
    with ThreadPoolExecutor() as pool:
        return _results(_run(pool, _convert_builders(directory, reference)))


def make_compressed(directory: Path, sources: Iterable[Image]) -> list[Image]:
    """Each source as .gz, .xz and .zst, single and two-member (`<stem>-multi.<ext>.<codec>`)."""
    with ThreadPoolExecutor() as pool:
        return _results(_run(pool, _compress_builders(directory, sources)))


def make_hostile(directory: Path, qcow2: Path) -> list[Image]:
    """Unsafe, encrypted, corrupt and oversized images (see `hostile`), built from `qcow2` where needed."""
    builders = hostile.independent_builders(directory) + hostile.derived_builders(directory, qcow2)
    with ThreadPoolExecutor() as pool:
        return _flat(_run(pool, builders))


def make_image_set(directory: Path, *, virtual_size: int = DEFAULT_VIRTUAL_SIZE) -> ImageSet:
    """Every group, into `directory`; the slow LUKS set-up overlaps everything else."""
    directory.mkdir(parents=True, exist_ok=True)
    reference = make_reference(directory, virtual_size)
    with ThreadPoolExecutor(max_workers=8) as pool:
        slow = _run(pool, hostile.independent_builders(directory))
        converted = _run(pool, _convert_builders(directory, reference))
        iso = pool.submit(make_iso, directory)
        archived = pool.submit(make_archives, directory)
        disks = [reference, *_results(converted), iso.result()]
        by_name = {image.name: image for image in disks}
        sources = [by_name[name] for name in COMPRESSED_SOURCES]
        compressed = _run(pool, _compress_builders(directory, sources))
        derived = _run(pool, hostile.derived_builders(directory, by_name["disk.qcow2"].path))
        made = [*disks, *archived.result(), *make_tiny(directory), *_results(compressed), *_flat(derived), *_flat(slow)]
    return ImageSet(
        directory=directory,
        reference_sha256=str(reference.content_sha256),
        virtual_size=virtual_size,
        images={image.name: image for image in made},
        archive_members=archives.benign_members(),
        iso_files=disk_formats.iso_contents(),
    )
