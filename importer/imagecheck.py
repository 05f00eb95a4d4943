"""The safety rules every image must pass before conversion, as pure functions over what qemu-img
(or our own header parser) reports. Stricter than upstream, which accepts a backing file that exists
on the importer's filesystem and never looks for external data files, encryption or corruption."""

from __future__ import annotations

import os

from importer.errors import InvalidImage, UnsafeImage, too_large
from importer.qemu import ImageInfo

SUPPORTED_FORMATS = frozenset({"raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx"})


def check_image(info: ImageInfo, *, expected_format: str, image_path: str, available: int) -> None:
    """Raise the first rule the image breaks, with a reason a user can act on."""
    if info.format not in SUPPORTED_FORMATS:
        raise InvalidImage(f"Invalid format {info.format} for image {image_path}")
    if info.format != expected_format:
        raise InvalidImage(f"image header says {expected_format} but qemu-img reads it as {info.format}")
    if info.backing_filename:
        raise UnsafeImage(f"Image is invalid because it has a backing file {info.backing_filename}: images "
                          f"with backing files are refused; flatten it first (qemu-img convert -O qcow2)")
    if info.data_file:
        raise UnsafeImage(f"Image is invalid because it has an external data file {info.data_file}: "
                          f"such images read other files and are refused")
    if info.encrypted:
        raise UnsafeImage("Image is encrypted: encrypted images cannot be imported")
    if info.corrupt:
        raise InvalidImage("Image is marked corrupt by qemu-img; repair it before importing")
    own_name = os.path.basename(image_path)
    foreign = [f for f in info.extent_files if os.path.basename(f) != own_name]
    if foreign:
        raise UnsafeImage(f"Image refers to other extent files ({', '.join(foreign)}): import a monolithic "
                          f"VMDK instead")
    if info.virtual_size > available:
        raise too_large(info.virtual_size, available)
