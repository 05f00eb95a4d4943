"""Checks that the test support keeps its promises, using real clients: curl against every nginx
listener and location, and qemu-img, gzip, xz, zstd and tar against every generated image.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import pytest

from tests.support import qemu
from tests.support.archives import ESCAPED_NAME
from tests.support.catalog import Compression, Group, Image, ImageSet, sha256_file
from tests.support.disk_formats import CONVERT_JOBS
from tests.support.hostile import BACKING_NAME, BOMB_SIZE, DATA_FILE_NAME, HUGE_VIRTUAL_SIZE
from tests.support.nginx import Location, NginxError, NginxServer, find_nginx
from tests.support.tls import TestPKI, make_client_cert

# ---------------------------------------------------------------------------------------- curl


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # of the last response, lower-case names
    body: bytes
    hops: list[int]  # status of every response, redirects included


def curl(tmp_path: Path, *args: str) -> Response:
    head, body = tmp_path / "curl-headers", tmp_path / "curl-body"
    argv = ["curl", "-sS", "--max-time", "20", "-D", str(head), "-o", str(body), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    blocks = [b for b in head.read_text().replace("\r\n", "\n").split("\n\n") if b.startswith("HTTP/")]
    lines = blocks[-1].splitlines()
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Response(
        status=int(lines[0].split()[1]),
        headers={k.lower(): v for k, v in headers.items()},
        body=body.read_bytes() if body.exists() else b"",
        hops=[int(b.split()[1]) for b in blocks],
    )


def test_files_have_length_and_accept_ranges(nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    response = curl(tmp_path, nginx.url("cdrom.iso"))
    assert response.status == 200
    assert response.headers["content-length"] == str(images["cdrom.iso"].path.stat().st_size)
    assert response.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(response.body).hexdigest() == images["cdrom.iso"].content_sha256


def test_range_request_returns_206(nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    response = curl(tmp_path, "-r", "512-1535", nginx.url("disk.raw"))
    assert response.status == 206
    assert response.headers["content-range"] == f"bytes 512-1535/{images.virtual_size}"
    assert response.body == images.path("disk.raw").read_bytes()[512:1536]


@pytest.mark.parametrize("tls", [False, True])
def test_basic_auth(nginx: NginxServer, pki: TestPKI, tmp_path: Path, tls: bool) -> None:
    url, ca = nginx.url("short.bin", tls=tls, auth=True), ("--cacert", str(pki.ca_cert))
    anonymous = curl(tmp_path, *ca, url)
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert curl(tmp_path, *ca, "-u", "admin:wrong", url).status == 401
    good = curl(tmp_path, *ca, "-u", f"{nginx.credentials.username}:{nginx.credentials.password}", url)
    assert good.status == 200
    assert good.body.startswith(b"pycdi short file")


def test_tls_verifies_against_test_ca(nginx: NginxServer, pki: TestPKI, tmp_path: Path) -> None:
    assert curl(tmp_path, "--cacert", str(pki.ca_cert), nginx.url("short.bin", tls=True)).status == 200
    port = nginx.ports.tls
    by_name = curl(
        tmp_path,
        "--cacert",
        str(pki.ca_cert),
        "--resolve",
        f"localhost:{port}:127.0.0.1",
        f"https://localhost:{port}/short.bin",
    )
    assert by_name.status == 200
    untrusted = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", nginx.url("short.bin", tls=True)], capture_output=True, check=False
    )
    assert untrusted.returncode == 60  # peer certificate cannot be authenticated with known CAs


def test_client_certificate_is_issued_by_test_ca(pki: TestPKI, tmp_path: Path) -> None:
    client = make_client_cert(pki, "importer", tmp_path)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki.ca_cert), "-purpose", "sslclient", str(client.cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("location", "status"), [(Location.REDIRECT, 302), (Location.MOVED, 301)])
def test_redirects_to_same_listener(nginx: NginxServer, tmp_path: Path, location: Location, status: int) -> None:
    response = curl(tmp_path, nginx.url("short.bin", location=location))
    assert response.status == status
    assert response.headers["location"] == nginx.url("short.bin")
    assert curl(tmp_path, "-L", nginx.url("short.bin", location=location)).hops == [status, 200]


def test_redirect_across_ports_to_auth_listener(nginx: NginxServer, tmp_path: Path) -> None:
    url = nginx.url("short.bin", location=Location.TO_AUTH)
    first = curl(tmp_path, url)
    assert (first.status, first.headers["location"]) == (302, nginx.url("short.bin", auth=True))
    assert curl(tmp_path, "-L", url).hops == [302, 401]
    user = f"{nginx.credentials.username}:{nginx.credentials.password}"
    assert curl(tmp_path, "-L", "--location-trusted", "-u", user, url).hops == [302, 200]


@pytest.mark.parametrize(("location", "status"), [(Location.NOT_FOUND, 404), (Location.UNAVAILABLE, 503)])
def test_error_locations(nginx: NginxServer, tmp_path: Path, location: Location, status: int) -> None:
    assert curl(tmp_path, nginx.url("disk.qcow2", location=location)).status == status


def test_html_location(nginx: NginxServer, tmp_path: Path) -> None:
    response = curl(tmp_path, nginx.url("short.bin", location=Location.HTML))
    assert (response.status, response.headers["content-type"]) == (200, "text/html")


def test_chunked_location_has_no_length(nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    url = nginx.url("disk.qcow2", location=Location.CHUNKED)
    for response in (curl(tmp_path, url), curl(tmp_path, "-r", "0-99", url)):
        assert response.status == 200
        assert "content-length" not in response.headers
        assert "accept-ranges" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        assert hashlib.sha256(response.body).hexdigest() == sha256_file(images.path("disk.qcow2"))
    assert "content-length" not in curl(tmp_path, "-I", url).headers


def test_no_ranges_location(nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    response = curl(tmp_path, "-r", "0-99", nginx.url("cdrom.iso", location=Location.NO_RANGES))
    assert response.status == 200
    assert "accept-ranges" not in response.headers
    assert response.headers["content-length"] == str(images.path("cdrom.iso").stat().st_size)
    assert hashlib.sha256(response.body).hexdigest() == images["cdrom.iso"].content_sha256


def test_slow_location_limits_rate(nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    # nginx sends one second's worth at once, then paces: 2 s worth of data takes about 1 s.
    length = 2 * nginx.slow_rate
    started = time.monotonic()
    response = curl(tmp_path, "-r", f"0-{length - 1}", nginx.url("disk.qcow2", location=Location.SLOW))
    elapsed = time.monotonic() - started
    assert (response.status, len(response.body)) == (206, length)
    assert response.body == images.path("disk.qcow2").read_bytes()[:length]
    assert 0.8 < elapsed < 5


def test_server_stops_and_frees_its_ports(pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello\n")
    with NginxServer(tmp_path / "www", tmp_path / "work", pki) as server:
        ports = server.ports
        assert curl(tmp_path, server.url("hello.txt")).body == b"hello\n"
        assert server.access_log_lines()[-1].startswith(f'{ports.plain} "GET /hello.txt HTTP/1.1" 200')
    for port in ports.all():
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


def test_missing_nginx_is_an_error_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(NginxError, match="apt-get install -y nginx"):
        find_nginx(search_path=str(tmp_path), fallback=tmp_path / "nginx")


# -------------------------------------------------------------------------------------- images


def _unwrap(image: Image, tmp_path: Path) -> Path:
    """Decompress with the real CLI (which reads every member/stream/frame)."""
    tool = {Compression.GZIP: "gzip", Compression.XZ: "xz", Compression.ZSTD: "zstd"}
    target = tmp_path / f"unwrapped-{image.name}"
    assert image.compression is not None
    with open(target, "wb") as out:
        subprocess.run([tool[image.compression], "-dc", str(image.path)], stdout=out, check=True)
    return target


def _disk_sha256(path: Path, tmp_path: Path) -> str:
    raw = tmp_path / f"{path.name}.raw"
    qemu.convert_to_raw(path, raw)
    digest = sha256_file(raw)
    raw.unlink()
    return digest


@pytest.mark.parametrize("name", ["disk.raw", *(job.name for job in CONVERT_JOBS)])
def test_disk_formats_convert_to_reference(images: ImageSet, tmp_path: Path, name: str) -> None:
    image = images[name]
    info = qemu.info(image.path)
    assert (info["format"], info["virtual-size"]) == (image.qemu_format, images.virtual_size)
    assert "backing-filename" not in info
    assert not info.get("encrypted", False)
    assert _disk_sha256(image.path, tmp_path) == images.reference_sha256


def test_reference_is_sparse_with_recognisable_sectors(images: ImageSet) -> None:
    path = images.path("disk.raw")
    assert path.stat().st_blocks * 512 < images.virtual_size // 8
    with open(path, "rb") as disk:
        assert disk.read(26) == b"PYCDI sector 000000000000\n"
        disk.seek(2 * 1024 * 1024)
        assert disk.read(4096) == bytes(4096)


def test_compressed_images_unwrap_to_their_content(images: ImageSet, tmp_path: Path) -> None:
    compressed = images.group(Group.COMPRESSED)
    assert len(compressed) == 18
    for image in compressed:
        inner = _unwrap(image, tmp_path)
        wrapped = images[str(image.wraps)]
        assert sha256_file(inner) == sha256_file(wrapped.path), image.name
        assert qemu.info(inner)["format"] == wrapped.qemu_format, image.name
        if image.name.startswith("disk") and image.wraps != "disk.raw":
            assert _disk_sha256(inner, tmp_path) == image.content_sha256, image.name
        inner.unlink()


def _members(image: Image) -> int:
    if image.compression is Compression.XZ:
        return int(_xz_totals(image.path)[1])
    if image.compression is Compression.ZSTD:
        listing = subprocess.run(["zstd", "-l", str(image.path)], capture_output=True, text=True, check=True).stdout
        return int(listing.splitlines()[1].split()[0])  # the "Frames" column
    data, count = image.path.read_bytes(), 0
    while data:  # gzip: every member leaves the following ones as unused data
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        member.decompress(data)
        data, count = member.unused_data, count + 1
    return count


def _xz_totals(path: Path) -> list[str]:
    listing = subprocess.run(["xz", "--robot", "--list", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line for line in listing.splitlines() if line.startswith("totals")).split("\t")


def test_multi_member_files_really_have_two_members(images: ImageSet) -> None:
    for image in images.group(Group.COMPRESSED):
        assert _members(image) == (2 if image.multi else 1), image.name


def test_iso_image(images: ImageSet, tmp_path: Path) -> None:
    path = images.path("cdrom.iso")
    with open(path, "rb") as iso_file:
        iso_file.seek(0x8001)
        assert iso_file.read(5) == b"CD001"
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        for name, data in images.iso_files.items():
            extracted = tmp_path / "extracted"
            iso.get_file_from_iso(str(extracted), iso_path=f"{name};1")
            assert extracted.read_bytes() == data
            extracted.unlink()
    finally:
        iso.close()


def test_benign_archives_extract_with_tar(images: ImageSet, tmp_path: Path) -> None:
    for name in ("files.tar", "files.tar.gz"):
        target = tmp_path / name
        target.mkdir()
        subprocess.run(["tar", "-xf", str(images.path(name)), "-C", str(target)], check=True)
        for member, data in images.archive_members.items():
            assert (target / member).read_bytes() == data


def test_evil_archives_hold_the_attack(images: ImageSet) -> None:
    def members(name: str) -> list[tuple[str, bytes, str]]:
        with tarfile.open(images.path(name)) as archive:
            return [(m.name, m.type, m.linkname) for m in archive.getmembers()][1:]  # skip ok.txt

    assert members("evil-dotdot.tar") == [("../evil", tarfile.REGTYPE, "")]
    assert members("evil-absolute.tar") == [("/etc/evil", tarfile.REGTYPE, "")]
    assert members("evil-symlink.tar") == [("link", tarfile.SYMTYPE, "/etc/passwd")]
    assert members("evil-symlink-write.tar") == [
        ("link", tarfile.SYMTYPE, f"../{ESCAPED_NAME}"),
        ("link", tarfile.REGTYPE, ""),
    ]
    assert members("evil-hardlink.tar") == [("hard", tarfile.LNKTYPE, "/etc/passwd")]
    assert members("evil-device.tar") == [("null", tarfile.CHRTYPE, "")]


def test_unsafe_qcow2_features(images: ImageSet) -> None:
    backing = qemu.info(images.path("backing.qcow2"))
    assert (backing["backing-filename"], backing["backing-filename-format"]) == (BACKING_NAME, "raw")
    data_file = qemu.info(images.path("datafile.qcow2"))["format-specific"]["data"]
    assert data_file["data-file"] == DATA_FILE_NAME
    for name, fmt in (("luks.qcow2", "qcow2"), ("disk.luks", "luks")):
        info = qemu.info(images.path(name))
        assert (info["format"], info["encrypted"]) == (fmt, True), name
    assert qemu.info(images.path("luks.qcow2"))["format-specific"]["data"]["encrypt"]["format"] == "luks"
    assert qemu.info(images.path("v1.qcow"))["format"] == "qcow"


def test_broken_and_oversized_images(images: ImageSet) -> None:
    assert qemu.info(images.path("truncated.qcow2"))["format"] == "qcow2"
    assert qemu.check(images.path("truncated.qcow2")).returncode == 2
    with pytest.raises(qemu.QemuImgError, match="Active L1 table too large"):
        qemu.info(images.path("corrupt-header.qcow2"))
    huge = qemu.info(images.path("huge.qcow2"))
    assert huge["virtual-size"] == HUGE_VIRTUAL_SIZE
    assert images.path("huge.qcow2").stat().st_size < 16 * 1024 * 1024


def test_xz_bomb(images: ImageSet) -> None:
    path = images.path("bomb.raw.xz")
    totals = _xz_totals(path)
    assert (int(totals[1]), int(totals[4])) == (1, BOMB_SIZE)  # one stream, 1 GiB uncompressed
    assert path.stat().st_size < 1024 * 1024
    head = subprocess.run(f"xz -dc {path} | head -c 1048576", shell=True, capture_output=True, check=True)
    assert head.stdout == bytes(1024 * 1024)


def test_every_file_is_catalogued_and_probed_as_declared(images: ImageSet) -> None:
    on_disk = {p.name for p in images.directory.iterdir()}
    assert on_disk == set(images.images) | {BACKING_NAME, DATA_FILE_NAME}
    for image in images:
        if image.name != "corrupt-header.qcow2":
            assert qemu.info(image.path)["format"] == image.qemu_format, image.name
    assert [i.path.stat().st_size for i in images.group(Group.TINY)] == [300, 0]
