"""qemu-img argument builders, output parsers, and the image safety rules."""

import json
import struct

import pytest

from importer.errors import ImageTooLarge, InvalidImage, UnsafeImage
from importer.imagecheck import check_image
from importer.qcow2header import Qcow2Header
from importer.qemu import ImageInfo, convert_argv, info_argv, parse_info, parse_progress


def test_argv_builders_pass_the_format_explicitly() -> None:
    assert info_argv("/s/img", "qcow2") == ["qemu-img", "info", "--output=json", "-f", "qcow2", "/s/img"]
    assert convert_argv("/s/img", "vpc", "/d/disk", preallocation=("-o", "preallocation=falloc")) == [
        "qemu-img", "convert", "-o", "preallocation=falloc", "-t", "writeback", "-p", "-f", "vpc", "-O", "raw",
        "/s/img", "/d/disk"]
    assert convert_argv("a", "qcow2", "/dev/x", cache_mode="none", existing_target=True)[-3:] == ["-n", "a", "/dev/x"]


def test_parse_info_finds_every_hazard() -> None:
    doc = {"virtual-size": 1024, "format": "qcow2", "backing-filename": "base.raw", "encrypted": True,
           "format-specific": {"type": "qcow2", "data": {"data-file": "ext.raw", "corrupt": True}}}
    info = parse_info(json.dumps(doc), "x")
    assert (info.backing_filename, info.data_file, info.encrypted, info.corrupt) == ("base.raw", "ext.raw", True, True)
    with pytest.raises(InvalidImage, match="Invalid json"):
        parse_info("{", "x")


@pytest.mark.parametrize(("token", "value"), [("    (45.34/100%)", 45.34), ("(100.00/100%)", 100.0), ("45.34", None)])
def test_parse_progress(token: str, value: float | None) -> None:
    assert parse_progress(token) == value


def info(**kw) -> ImageInfo:  # type: ignore[no-untyped-def]
    base = {"format": "qcow2", "virtual_size": 100, "backing_filename": None, "data_file": None,
            "encrypted": False, "corrupt": False}
    return ImageInfo(**{**base, **kw})


@pytest.mark.parametrize(("bad", "error", "text"), [
    (info(format="luks"), InvalidImage, "Invalid format luks"),
    (info(format="vmdk"), InvalidImage, "header says qcow2"),
    (info(backing_filename="cirros.raw"), UnsafeImage, "backing file cirros.raw"),
    (info(data_file="/etc/shadow"), UnsafeImage, "external data file /etc/shadow"),
    (info(encrypted=True), UnsafeImage, "encrypted"),
    (info(corrupt=True), InvalidImage, "corrupt"),
    (info(extent_files=("/s/img", "/etc/passwd")), UnsafeImage, "other extent files"),
    (info(virtual_size=101), ImageTooLarge, "virtual image size 101 is larger than the reported available storage 100"),
])
def test_check_image_refuses(bad: ImageInfo, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        check_image(bad, expected_format="qcow2", image_path="/s/img", available=100)


def test_check_image_accepts_a_clean_image() -> None:
    check_image(info(extent_files=("/s/img",)), expected_format="qcow2", image_path="/s/img", available=100)


def qcow2_header(*, backing: bytes = b"", size: int = 1 << 20, crypt: int = 0, incompat: int = 0) -> bytes:
    data = bytearray(4096)
    offset = 512 if backing else 0
    struct.pack_into(">4sIQIIQI", data, 0, b"QFI\xfb", 3, offset, len(backing), 16, size, crypt)
    struct.pack_into(">Q", data, 72, incompat)
    data[512:512 + len(backing)] = backing
    return bytes(data)


@pytest.mark.parametrize(("header", "error", "text"), [
    (qcow2_header(backing=b"base.qcow2"), UnsafeImage, "backing file base.qcow2"),
    (qcow2_header(incompat=4), UnsafeImage, "external data file"),
    (qcow2_header(crypt=2), UnsafeImage, "encrypted"),
    (qcow2_header(incompat=2), InvalidImage, "corrupt"),
    (qcow2_header(size=1 << 40), ImageTooLarge, "is larger than the reported available storage"),
])
def test_qcow2_header_checked_before_download(header: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        Qcow2Header.parse(header).check(available=1 << 30)


def test_qcow2_header_clean() -> None:
    parsed = Qcow2Header.parse(qcow2_header())
    assert parsed.virtual_size == 1 << 20
    parsed.check(available=1 << 20)
