"""Reads the fixed qcow2 header from the first bytes of a stream, so that an unsafe or oversized qcow2
is refused before it is downloaded rather than after (upstream learns the virtual size only from
`qemu-img info` on a whole file). qemu-img's own check still runs on the full image afterwards."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from importer.errors import InvalidImage, UnsafeImage, too_large

_INCOMPAT_EXTERNAL_DATA_FILE = 1 << 2
_INCOMPAT_CORRUPT = 1 << 1


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    backing_file_offset: int
    backing_file_size: int
    virtual_size: int
    crypt_method: int
    incompatible_features: int
    backing_file: str | None

    @classmethod
    def parse(cls, header: bytes) -> Qcow2Header:
        if len(header) < 72 or not header.startswith(b"QFI\xfb"):
            raise InvalidImage("qcow2 header is truncated")
        version, backing_offset, backing_size = struct.unpack_from(">IQI", header, 4)
        (virtual_size,) = struct.unpack_from(">Q", header, 24)
        (crypt_method,) = struct.unpack_from(">I", header, 32)
        incompatible = struct.unpack_from(">Q", header, 72)[0] if version >= 3 and len(header) >= 80 else 0
        name = None
        if backing_offset and backing_offset + backing_size <= len(header):
            name = header[backing_offset:backing_offset + backing_size].decode(errors="replace")
        return cls(version, backing_offset, backing_size, virtual_size, crypt_method, incompatible, name)

    def check(self, available: int) -> None:
        if self.backing_file_offset:
            name = f" {self.backing_file}" if self.backing_file else ""
            raise UnsafeImage(f"Image is invalid because it has a backing file{name}: images with backing files "
                              f"are refused; flatten it first (qemu-img convert -O qcow2)")
        if self.incompatible_features & _INCOMPAT_EXTERNAL_DATA_FILE:
            raise UnsafeImage("Image is invalid because it has an external data file: such images read "
                              "other files and are refused")
        if self.crypt_method:
            raise UnsafeImage("Image is encrypted: encrypted images cannot be imported")
        if self.incompatible_features & _INCOMPAT_CORRUPT:
            raise InvalidImage("Image is marked corrupt by qemu-img; repair it before importing")
        if self.virtual_size > available:
            raise too_large(self.virtual_size, available)
