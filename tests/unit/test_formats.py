"""Format detection beneath stacks of compression, on synthetic headers and streams."""

import gzip
import io
import lzma

import pytest
import zstandard

from importer.errors import InvalidImage, UnsafeImage
from importer.formats import Compression, ImageFormat, detect_format, open_image


def header(at: int, magic: bytes, size: int = 0x9000) -> bytes:
    data = bytearray(size)
    data[at:at + len(magic)] = magic
    return bytes(data)


@pytest.mark.parametrize(("data", "fmt"), [
    (header(0, b"QFI\xfb\x00\x00\x00\x03"), ImageFormat.QCOW2),
    (header(0, b"KDMV"), ImageFormat.VMDK),
    (header(0x40, b"\x7f\x10\xda\xbe"), ImageFormat.VDI),
    (header(0, b"conectix"), ImageFormat.VHD),
    (header(0, b"vhdxfile"), ImageFormat.VHDX),
    (header(0x8001, b"CD001"), ImageFormat.ISO),
    (header(257, b"ustar"), ImageFormat.TAR),
    (bytes(4096), ImageFormat.RAW),
])
def test_detect_format(data: bytes, fmt: ImageFormat) -> None:
    assert detect_format(data) is fmt


@pytest.mark.parametrize(("data", "error", "text"), [
    (header(0, b"QFI\xfb\x00\x00\x00\x01"), InvalidImage, "Invalid format qcow"),
    (header(0, b"LUKS\xba\xbe"), UnsafeImage, "LUKS-encrypted"),
    (header(0, b"# Disk DescriptorFile\n"), UnsafeImage, "VMDK descriptor"),
])
def test_refused_formats(data: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        detect_format(data)


def _zstd_frames(*parts: bytes) -> bytes:
    return b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)


PAYLOAD = header(0, b"QFI\xfb\x00\x00\x00\x03", 200_000) + b"tail"


@pytest.mark.parametrize(("wrap", "layers"), [
    (lambda d: gzip.compress(d), (Compression.GZIP,)),
    (lambda d: gzip.compress(d[:1000]) + gzip.compress(d[1000:]), (Compression.GZIP,)),
    (lambda d: lzma.compress(d[:5000]) + lzma.compress(d[5000:]), (Compression.XZ,)),
    (lambda d: _zstd_frames(d[:70000], d[70000:]), (Compression.ZSTD,)),
    (lambda d: gzip.compress(gzip.compress(d)), (Compression.GZIP, Compression.GZIP)),
    (lambda d: _zstd_frames(lzma.compress(gzip.compress(d))), (Compression.ZSTD, Compression.XZ, Compression.GZIP)),
])
def test_open_image_unwraps_every_layer_and_member(wrap, layers) -> None:  # type: ignore[no-untyped-def]
    image = open_image(io.BytesIO(wrap(PAYLOAD)))
    assert image.compression == layers
    assert image.format is ImageFormat.QCOW2
    assert image.reader.read() == PAYLOAD


def test_too_many_layers_refused() -> None:
    data = PAYLOAD
    for _ in range(5):
        data = gzip.compress(data)
    with pytest.raises(InvalidImage, match="compressed more than 4 times"):
        open_image(io.BytesIO(data))


@pytest.mark.parametrize(("data", "text"), [
    (b"", "could not process image header: EOF"),
    (b"This is a test string", "could not process image header: unexpected EOF"),
])
def test_short_streams(data: bytes, text: str) -> None:
    with pytest.raises(InvalidImage, match=text):
        open_image(io.BytesIO(data))


def test_truncated_and_corrupt_compression() -> None:
    good = gzip.compress(PAYLOAD)
    with pytest.raises(InvalidImage, match="truncated"):
        open_image(io.BytesIO(good[: len(good) // 2])).reader.read()
    corrupt = good[:20] + bytes(200) + good[220:]
    with pytest.raises(InvalidImage, match="corrupt"):
        open_image(io.BytesIO(corrupt)).reader.read()
