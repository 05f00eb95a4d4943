"""Image format detection by magic numbers, beneath any stack of gzip, xz and zstd.

`open_image` peels compression layers one at a time (multi-member gzip, multi-stream xz and
multi-frame zstd included; gzip DEFLATE block by block through `importer.gzipblocks`, xz block by
block through `importer.xzblocks`, zstd frame by frame through `importer.zstdframes`), then names the
image format of what is left; the decompressors say when they are between gzip DEFLATE blocks (or
members, when the system zlib cannot be loaded: `_MemberReader`), xz blocks or zstd frames
(`boundary`), where a checkpoint can restart them.
Unlike upstream, nested compression is unwrapped fully (up to `MAX_LAYERS`), ISO 9660 is recognised
(its magic is at 0x8001, beyond upstream's 512-byte header), and formats we refuse to import are
named here: LUKS and text VMDK descriptors (which point at other files) as unsafe, and every other
format qemu-img's probing recognises by its header (qcow v1, QED, Parallels, Bochs, cloop, VMDK 3) as
`Invalid format <name>`, the words upstream's qemu-img validation uses. Upstream sees those formats
because qemu-img probes what it downloaded; we stream raw without asking qemu-img, so without this
table they would be written to the volume as if they were raw disks. Only data that matches no magic
at all is raw. (qemu recognises DMG by its file name, not its header, so a DMG is raw to both.) Runs
in the transfer thread; its neighbour `importer.transfer` decides what to do with the detected format.
"""

from __future__ import annotations

import functools
import logging
import lzma
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import zstandard

from importer import inflate
from importer.errors import InvalidImage, UnsafeImage
from importer.gzipblocks import GzipBlocks, GzipFormatError
from importer.reader import Reader
from importer.xzblocks import XzBlocks, XzFormatError
from importer.zstdframes import FrameError, ZstdFrames

MIN_HEADER = 512
PEEK_SIZE = 0x8001 + 5 + 1024  # room for the ISO 9660 volume descriptor magic
MAX_LAYERS = 4
log = logging.getLogger(__name__)


class Compression(StrEnum):
    GZIP = "gz"
    XZ = "xz"
    ZSTD = "zst"


class ImageFormat(StrEnum):
    """Values are qemu-img's driver names where qemu-img converts the format."""

    RAW = "raw"
    ISO = "iso"
    TAR = "tar"
    QCOW2 = "qcow2"
    VMDK = "vmdk"
    VDI = "vdi"
    VHD = "vpc"
    VHDX = "vhdx"

    @property
    def needs_conversion(self) -> bool:
        return self in _CONVERTIBLE


_CONVERTIBLE = {ImageFormat.QCOW2, ImageFormat.VMDK, ImageFormat.VDI, ImageFormat.VHD, ImageFormat.VHDX}

_COMPRESSION_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)


def detect_compression(header: bytes) -> Compression | None:
    for magic, kind in _COMPRESSION_MAGIC:
        if header.startswith(magic):
            return kind
    return None


# Headers of formats qemu-img recognises and we do not import (qemu's driver names), as its probes
# read them: magic bytes at the start of the image.
_REFUSED_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"QED\x00", "qed", ""),
    (b"COWD", "vmdk", " (version 3, ESX 2 sparse)"),
    (b"WithoutFreeSpace", "parallels", ""),
    (b"WithouFreSpacExt", "parallels", ""),
    (b"Bochs Virtual HD Image\x00", "bochs", ""),
    (b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n", "cloop", ""),
)


def unsupported_format(name: str, detail: str = "") -> InvalidImage:
    """Upstream's wording ("Invalid format <name>"), and what to do about it."""
    return InvalidImage(f"Invalid format {name}{detail}: only raw, qcow2, vmdk, vdi, vhd, vhdx and ISO images "
                        f"(optionally gz, xz or zstd compressed) can be imported; convert it first "
                        f"(qemu-img convert -O qcow2)")


def detect_format(header: bytes) -> ImageFormat:
    """The image format of an uncompressed header; raises for formats we refuse."""
    if header.startswith(b"QFI\xfb"):
        version = int.from_bytes(header[4:8], "big")
        if version not in (2, 3):
            raise unsupported_format("qcow", f" (version {version})")
        return ImageFormat.QCOW2
    for magic, name, detail in _REFUSED_MAGIC:
        if header.startswith(magic):
            raise unsupported_format(name, detail)
    if header.startswith(b"LUKS\xba\xbe"):
        raise UnsafeImage("image is LUKS-encrypted: encrypted images cannot be imported")
    if header.startswith(b"KDMV"):
        return ImageFormat.VMDK
    if header.startswith(b"# Disk DescriptorFile"):
        raise UnsafeImage("image is a VMDK descriptor that refers to other files: import a monolithic "
                          "(single-file) VMDK instead")
    if header[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return ImageFormat.VDI
    if header.startswith(b"conectix"):
        return ImageFormat.VHD
    if header.startswith(b"vhdxfile"):
        return ImageFormat.VHDX
    if header[0x8001:0x8006] == b"CD001":
        return ImageFormat.ISO
    if header[257:262] == b"ustar":
        return ImageFormat.TAR
    return ImageFormat.RAW


def read_up_to(reader: Reader, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        piece = reader.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts)


class PrefixReader:
    """Replays an already-read header before the rest of the stream."""

    def __init__(self, prefix: bytes, inner: Reader) -> None:
        self._prefix = memoryview(prefix)
        self._inner = inner

    @property
    def pending(self) -> bytes:
        """What is still to be replayed."""
        return bytes(self._prefix)

    def read(self, size: int = -1, /) -> bytes:
        if not self._prefix:
            return self._inner.read(size)
        if size < 0:
            piece, self._prefix = bytes(self._prefix), memoryview(b"")
            return piece + self._inner.read()
        piece = bytes(self._prefix[:size])
        self._prefix = self._prefix[size:]
        return piece


_EMPTY_GZIP = zlib.compress(b"", wbits=31)


class _MemberReader:
    """The fallback when the system zlib cannot be loaded for `GzipBlocks` (`importer.inflate`): gzip
    members one after another, through zlib decompressor objects fed 64 KiB at a time (zlib
    copies the unconsumed input on every call, so less is better; the stdlib file wrapper feeds 8 KiB
    per call, which costs ~15% on a mostly-zero disk image). Semantics are gzip's: zero padding
    between members is skipped and anything else after a member must be another member; input
    ending inside a member raises EOFError.
    Between members, `boundary` gives the input read past the end of the last one: a checkpoint can
    restart decompression there. `at_boundary=True` starts as if a member had just ended (a resumed
    import), so zero padding and the end of the input are handled as between members."""

    def __init__(self, inner: Reader, *, at_boundary: bool = False) -> None:
        self._inner = inner
        self._gzip = zlib.decompressobj(31)
        if at_boundary:
            self._gzip.decompress(_EMPTY_GZIP)
        self._done = False

    def boundary(self) -> bytes | None:
        """The input read past the last complete member when between members, else None."""
        member = self._gzip
        if not member.eof or member.unconsumed_tail:
            return None
        return member.unused_data

    def state(self) -> bytes:
        return b""

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while not self._done:
            if out := self._read_gzip(size):
                return out
        return b""

    def _more(self) -> bytes:
        return self._inner.read(64 << 10)

    def _read_gzip(self, size: int) -> bytes:
        member = self._gzip
        if member.eof:
            data = member.unused_data.lstrip(b"\0")
            while not data:
                more = self._more()
                if not more:
                    self._done = True
                    return b""
                data = more.lstrip(b"\0")
            self._gzip = member = zlib.decompressobj(31)
            return member.decompress(data, size)
        data = member.unconsumed_tail or self._more()
        out = member.decompress(data, size)
        if not data and not out:
            raise EOFError("gzip member ended early")
        return out


class DecompressingReader:
    """A decompressor whose errors become import failures a user can act on."""

    def __init__(self, kind: Compression, inner: Reader, *, at_boundary: bool = False, state: bytes = b"") -> None:
        """`at_boundary` (and, for xz, `state`): continue from a checkpoint's restart point."""
        self.kind = kind
        self._inner: Reader
        self._members: GzipBlocks | _MemberReader | XzBlocks | ZstdFrames
        if kind is Compression.GZIP:
            with self._translated():  # a restart state that does not fit
                self._inner = self._members = _gzip_reader(inner, at_boundary, state)
        elif kind is Compression.XZ:
            self._inner = self._members = XzBlocks(inner, at_boundary=at_boundary, state=state)
        else:  # a zstd reader starts between frames: `at_boundary` is how it always starts
            self._inner = self._members = ZstdFrames(inner)

    def boundary(self) -> bytes | None:
        """The input read past the last complete member, block or frame, when between them; else None.
        (Finding out may read a little further: the end of an xz block, a zstd frame's last byte.)"""
        with self._translated():
            return self._members.boundary()

    def state(self) -> bytes:
        """What a reader continuing from this boundary needs besides the input (inside a gzip member:
        the DEFLATE position, window, CRC-32 and length; an xz stream's header and the blocks seen so
        far, for its index); empty between gzip members and for zstd."""
        return self._members.state()

    def read(self, size: int = -1, /) -> bytes:
        with self._translated():
            return self._inner.read(size)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except EOFError as e:
            raise InvalidImage(f"{self.kind} stream ended before its end marker: the image is truncated") from e
        except (OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError, FrameError, XzFormatError,
                GzipFormatError, inflate.InflateError) as e:
            raise InvalidImage(f"{self.kind} stream is corrupt: {e}") from e


def _gzip_reader(inner: Reader, at_boundary: bool, state: bytes) -> GzipBlocks | _MemberReader:
    """Block boundaries through the system zlib; whole members, with the reason logged, without it."""
    why = inflate.unavailable()
    if why is None:
        return GzipBlocks(inner, at_boundary=at_boundary, state=state)
    if state:  # importer.resume refuses such a record before it gets here
        raise GzipFormatError(f"cannot continue inside a gzip member: {why}")
    _warn_once(why)
    return _MemberReader(inner, at_boundary=at_boundary)


@functools.cache
def _warn_once(why: str) -> None:
    log.warning("%s; gzip images are checkpointed at member ends only", why)


@dataclass(frozen=True)
class OpenedImage:
    reader: Reader
    compression: tuple[Compression, ...]
    format: ImageFormat
    header: bytes
    # The readers open_image stacked, from the wire up: header replay, decompressor, header replay...
    # (a checkpoint looks into them for a restart point).
    layers: tuple[PrefixReader | DecompressingReader, ...] = ()

    @property
    def description(self) -> str:
        return ".".join([self.format.value, *(c.value for c in reversed(self.compression))])


def open_image(reader: Reader) -> OpenedImage:
    """Peel compression layers and detect the image format; the returned reader replays the header."""
    layers: list[Compression] = []
    stack: list[PrefixReader | DecompressingReader] = []
    while True:
        header = read_up_to(reader, PEEK_SIZE)
        replay = PrefixReader(header, reader)
        stack.append(replay)
        reader = replay
        kind = detect_compression(header)
        if kind is None:
            break
        if len(layers) == MAX_LAYERS:
            raise InvalidImage(f"image is compressed more than {MAX_LAYERS} times over; refusing to unwrap it")
        layers.append(kind)
        decompressor = DecompressingReader(kind, reader)
        stack.append(decompressor)
        reader = decompressor
    if len(header) < MIN_HEADER:
        detail = "EOF" if not header else "unexpected EOF"
        raise InvalidImage(f"could not process image header: {detail} (the image is only {len(header)} bytes)")
    return OpenedImage(reader, tuple(layers), detect_format(header), header, tuple(stack))
