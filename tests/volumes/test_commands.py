"""The exact commands the loop pool runs, and the parsers for what losetup and the kernel print."""

from __future__ import annotations

import pytest

from cdi.embedded.volumes.commands import (
    MountEntry,
    associated_argv,
    attach_argv,
    detach_argv,
    freeze_argv,
    grow_filesystem_argv,
    mkfs_argv,
    mkfs_reflink_pool_argv,
    mount_argv,
    mount_at,
    mounts_under,
    parse_device,
    parse_devices,
    parse_mountinfo,
    set_capacity_argv,
    umount_argv,
    unfreeze_argv,
)
from cdi.embedded.volumes.errors import UnsupportedFilesystem
from cdi.embedded.volumes.loop import check_filesystem


def test_mkfs_ext4_is_fast_and_reserves_nothing() -> None:
    assert mkfs_argv("ext4", "/p/images/.v.img.partial") == [
        "mkfs.ext4", "-F", "-q", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "/p/images/.v.img.partial"]


def test_mkfs_xfs() -> None:
    assert mkfs_argv("xfs", "/p/v.img") == ["mkfs.xfs", "-f", "-q", "/p/v.img"]


def test_the_pool_filesystem_is_xfs_with_reflink_and_a_small_log() -> None:
    assert mkfs_reflink_pool_argv("/p/.reflink-pool.img.partial") == [
        "mkfs.xfs", "-f", "-q", "-m", "reflink=1", "-l", "size=64m", "/p/.reflink-pool.img.partial"]


def test_freezing_and_thawing_a_mounted_volume() -> None:
    assert freeze_argv("/p/mounts/v") == ["fsfreeze", "--freeze", "/p/mounts/v"]
    assert unfreeze_argv("/p/mounts/v") == ["fsfreeze", "--unfreeze", "/p/mounts/v"]


def test_mkfs_refuses_other_filesystems() -> None:
    with pytest.raises(ValueError, match="btrfs"):
        mkfs_argv("btrfs", "/p/v.img")


def test_losetup_commands() -> None:
    assert attach_argv("/p/images/v.img") == ["losetup", "--find", "--show", "/p/images/v.img"]
    assert detach_argv("/dev/loop3") == ["losetup", "--detach", "/dev/loop3"]
    assert associated_argv("/p/images/v.img") == [
        "losetup", "--list", "--noheadings", "--output", "NAME", "--associated", "/p/images/v.img"]


def test_mount_commands() -> None:
    assert mount_argv("ext4", "/dev/loop1", "/p/mounts/v") == [
        "mount", "-t", "ext4", "-o", "noinit_itable", "/dev/loop1", "/p/mounts/v"]
    assert mount_argv("xfs", "/dev/loop1", "/p/mounts/v") == [
        "mount", "-t", "xfs", "-o", "nouuid", "/dev/loop1", "/p/mounts/v"]
    assert umount_argv("/p/mounts/v") == ["umount", "/p/mounts/v"]


def test_growing_commands() -> None:
    assert set_capacity_argv("/dev/loop2") == ["losetup", "--set-capacity", "/dev/loop2"]
    assert grow_filesystem_argv("ext4", "/dev/loop2", "/p/mounts/v") == ["resize2fs", "/dev/loop2"]
    assert grow_filesystem_argv("xfs", "/dev/loop2", "/p/mounts/v") == ["xfs_growfs", "-d", "/p/mounts/v"]
    with pytest.raises(ValueError, match="btrfs"):
        grow_filesystem_argv("btrfs", "/dev/loop2", "/p/mounts/v")


def test_losetup_output() -> None:
    assert parse_device("/dev/loop7\n") == "/dev/loop7"
    assert parse_devices("/dev/loop0\n/dev/loop12\n\n") == ["/dev/loop0", "/dev/loop12"]
    assert parse_devices("") == []
    with pytest.raises(ValueError, match="not a device"):
        parse_device("losetup: cannot find an unused loop device\n")


MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "61 27 7:0 / /pool/mounts/pvc-a rw,relatime shared:33 - ext4 /dev/loop0 rw\n"
    "62 27 7:1 / /pool/mounts/with\\040space rw,relatime - xfs /dev/loop1 rw,nouuid\n"
    "63 61 7:2 / /pool/mounts/pvc-a/nested rw master:1 shared:2 - ext4 /dev/loop2 rw\n"
    "64 27 7:3 / /pool/mounts/pvc-a rw - ext4 /dev/loop3 rw\n"
)


def test_mountinfo_parsing_handles_optional_fields_and_escapes() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert entries[1] == MountEntry("/pool/mounts/pvc-a", "/dev/loop0", "ext4")
    assert entries[2] == MountEntry("/pool/mounts/with space", "/dev/loop1", "xfs")
    assert entries[3] == MountEntry("/pool/mounts/pvc-a/nested", "/dev/loop2", "ext4")


def test_the_last_mount_on_a_path_is_the_visible_one() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert mount_at(entries, "/pool/mounts/pvc-a") == MountEntry("/pool/mounts/pvc-a", "/dev/loop3", "ext4")
    assert mount_at(entries, "/pool/mounts/pvc-b") is None


def test_mounts_under_a_root_deepest_first() -> None:
    points = [entry.mount_point for entry in mounts_under(parse_mountinfo(MOUNTINFO), "/pool")]
    assert points[0] == "/pool/mounts/pvc-a/nested"
    assert sorted(points) == ["/pool/mounts/pvc-a", "/pool/mounts/pvc-a", "/pool/mounts/pvc-a/nested",
                              "/pool/mounts/with space"]
    assert mounts_under(parse_mountinfo(MOUNTINFO), "/poo") == []


def test_filesystem_choice_is_checked_before_anything_runs() -> None:
    assert check_filesystem("ext4") == "ext4"
    assert check_filesystem("xfs") == "xfs"
    with pytest.raises(UnsupportedFilesystem, match="'btrfs' is not supported"):
        check_filesystem("btrfs")
