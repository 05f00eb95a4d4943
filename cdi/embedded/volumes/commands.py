"""Argument lists for losetup, mkfs.*, mount, umount, resize2fs, xfs_growfs and fsfreeze, and parsers for
what they (and the kernel) print.

Pure functions only: `cdi.embedded.volumes.loop` runs the argv through a `cdi.toolrun`
runner and parses the output here, so the exact commands are tested without running anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cdi.embedded.volumes.fit import MIN_IMAGE_BYTES

SUPPORTED_FILESYSTEMS: Final = tuple(MIN_IMAGE_BYTES)


def mkfs_argv(fs_type: str, target: str) -> list[str]:
    """Format `target` (an image file) quickly: ext4 without reserved blocks and with lazy inode-table
    and journal initialisation, xfs with defaults. Both force, as the target is a fresh image."""
    if fs_type == "ext4":
        return ["mkfs.ext4", "-F", "-q", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", target]
    if fs_type == "xfs":
        return ["mkfs.xfs", "-f", "-q", target]
    raise ValueError(f"unsupported filesystem {fs_type!r}")


def mkfs_reflink_pool_argv(target: str) -> list[str]:
    """Format the pool filesystem image (`cdi.embedded.volumes.reflinkfs`): xfs with reflink, so volume
    images on it are cloned in O(1); a 64 MiB log instead of the default (512 MiB for 1 TiB), which mkfs
    would write out in full."""
    return ["mkfs.xfs", "-f", "-q", "-m", "reflink=1", "-l", "size=64m", target]


def freeze_argv(mount_point: str) -> list[str]:
    """Suspend writes to a mounted filesystem and flush it, so a copy of its image is consistent."""
    return ["fsfreeze", "--freeze", mount_point]


def unfreeze_argv(mount_point: str) -> list[str]:
    return ["fsfreeze", "--unfreeze", mount_point]


def attach_argv(image: str) -> list[str]:
    """Attach an image to the first free loop device and print that device's path."""
    return ["losetup", "--find", "--show", image]


def detach_argv(device: str) -> list[str]:
    return ["losetup", "--detach", device]


def associated_argv(image: str) -> list[str]:
    """List the loop devices backed by `image` (matched by inode, so a renamed path still matches)."""
    return ["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", image]


def set_capacity_argv(device: str) -> list[str]:
    """Make a loop device take on its (grown) backing file's new size."""
    return ["losetup", "--set-capacity", device]


def mount_argv(fs_type: str, device: str, target: str) -> list[str]:
    """Mount a loop device. xfs refuses a second filesystem with the same UUID, which every clone of an
    image has, so xfs volumes mount with `nouuid`. ext4 mounts with `noinit_itable`: the kernel would
    otherwise zero the inode tables mkfs left uninitialised, and on a loop device that allocates them in
    the sparse image (about 1.5 % of the volume) although they already read as zeros."""
    options = {"xfs": ["-o", "nouuid"], "ext4": ["-o", "noinit_itable"]}.get(fs_type, [])
    return ["mount", "-t", fs_type, *options, device, target]


def grow_filesystem_argv(fs_type: str, device: str, mount_point: str) -> list[str]:
    """Grow a mounted filesystem to fill its (grown) device: resize2fs works on the device (online, as
    it is mounted), xfs_growfs on the mount point."""
    if fs_type == "ext4":
        return ["resize2fs", device]
    if fs_type == "xfs":
        return ["xfs_growfs", "-d", mount_point]
    raise ValueError(f"unsupported filesystem {fs_type!r}")


def umount_argv(target: str) -> list[str]:
    return ["umount", target]


def check_filesystem_argv(device: str) -> list[str]:
    """Check an unmounted ext4 filesystem before resize2fs grows it offline (which insists on a fresh
    check); exit status 1 means errors were corrected."""
    return ["e2fsck", "-f", "-y", device]


def online_resize_refused(stderr: str) -> bool:
    """Whether resize2fs failed because the kernel refused to resize the mounted filesystem (EPERM:
    the process lacks CAP_SYS_RESOURCE, as in many containers), so only an offline resize can work."""
    return "Permission denied to resize filesystem" in stderr or "Operation not permitted" in stderr


def parse_device(stdout: str) -> str:
    """The device `losetup --find --show` printed."""
    device = stdout.strip()
    if not device.startswith("/dev/"):
        raise ValueError(f"losetup printed {stdout!r}, not a device path")
    return device


def parse_devices(stdout: str) -> list[str]:
    """The devices, one a line, that `losetup --list --output NAME` printed."""
    return [line.strip() for line in stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo, reduced to what the pools need."""

    mount_point: str
    source: str
    fs_type: str


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as octal escapes (\\040 …)."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Entries of /proc/<pid>/mountinfo: "id parent maj:min root mount-point options [optional…] -
    fstype source super-options"."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 5:
            continue
        separator = fields.index("-")
        if len(fields) < separator + 3:
            continue
        entries.append(MountEntry(mount_point=_unescape(fields[4]), source=_unescape(fields[separator + 2]),
                                  fs_type=fields[separator + 1]))
    return entries


def mount_at(entries: Iterable[MountEntry], path: str) -> MountEntry | None:
    """The filesystem visible at `path` if something is mounted exactly there (the last mount wins)."""
    found = None
    for entry in entries:
        if entry.mount_point == path:
            found = entry
    return found


def mounts_under(entries: Iterable[MountEntry], root: str) -> list[MountEntry]:
    """Mounts at or below the directory `root`, deepest first (the order to unmount them in)."""
    prefix = root.rstrip("/") + "/"
    inside = [entry for entry in entries if entry.mount_point == root or entry.mount_point.startswith(prefix)]
    return sorted(inside, key=lambda entry: entry.mount_point.count("/"), reverse=True)
