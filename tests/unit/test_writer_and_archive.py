"""The sparse writer and the safe tar extractor, on real files in a temp directory."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from importer.archive import STAGING_NAME, extract_tar
from importer.errors import ImageTooLarge, UnsafeArchive
from importer.writer import BLOCK, SparseWriter, is_zero

MiB = 1 << 20


def _write(path: Path, data: bytes, *, limit: int = 1 << 40) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = SparseWriter(fd, block_device=False, sparse=True, limit=limit, what=str(path))
        return writer.copy_from(io.BytesIO(data))
    finally:
        os.close(fd)


def test_zero_blocks_become_holes(tmp_path: Path) -> None:
    data = bytes(8 * MiB) + b"\x01" * 100 + bytes(8 * MiB)
    out = tmp_path / "disk"
    assert _write(out, data) == len(data)
    assert out.read_bytes() == data
    assert out.stat().st_blocks * 512 <= 128 * 1024  # one 64 KiB block of data, the rest holes


def test_all_zero_image_keeps_its_length(tmp_path: Path) -> None:
    out = tmp_path / "disk"
    _write(out, bytes(3 * MiB + 7))
    assert out.stat().st_size == 3 * MiB + 7
    assert out.stat().st_blocks == 0


@pytest.mark.parametrize("shape", ["bytes", "whole view", "offset view", "bytearray view", "reversed view"])
def test_is_zero_judges_exactly_the_range_asked_whatever_the_buffer(shape: str) -> None:
    # A block of zeros between a non-zero byte just before it and one just after it: a range that is one
    # byte off either way must be judged non-zero, however the bytes are held (the in-place comparison
    # of a whole bytes object, or the copying one of any other view).
    raw = b"\x07" + bytes(BLOCK) + b"\x09" + bytes(100)
    views: dict[str, bytes | memoryview] = {
        "bytes": raw, "whole view": memoryview(raw), "offset view": memoryview(b"\x00" + raw)[1:],
        "bytearray view": memoryview(bytearray(raw)), "reversed view": memoryview(raw[::-1])[::-1]}
    data = views[shape]
    assert is_zero(data, 1, 1 + BLOCK)
    assert not is_zero(data, 0, BLOCK)
    assert not is_zero(data, 2, 2 + BLOCK)
    assert is_zero(data, 2 + BLOCK, len(raw))  # a short tail
    assert not is_zero(data, 1 + BLOCK, len(raw))


def test_limit_stops_a_stream_before_it_overruns(tmp_path: Path) -> None:
    with pytest.raises(ImageTooLarge, match="larger than the reported available storage 2097152"):
        _write(tmp_path / "disk", b"\x01" * (3 * MiB), limit=2 * MiB)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_archive_extracts_files_dirs_and_inner_links(tmp_path: Path) -> None:
    directory = tarfile.TarInfo("dir")
    directory.type = tarfile.DIRTYPE
    stream = _tar(_file("a.txt", b"hello"), (directory, None), _file("dir/b.txt", b"world"),
                  _link("dir/to-a", "../a.txt"), _link("hard", "a.txt", tarfile.LNKTYPE))
    assert extract_tar(stream, tmp_path, 1 << 30) == 10
    assert (tmp_path / "dir" / "to-a").read_bytes() == b"hello"
    assert (tmp_path / "hard").read_bytes() == b"hello"
    assert not (tmp_path / STAGING_NAME).exists()


def _device() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    return info, None


@pytest.mark.parametrize(("members", "text"), [
    ([_file("../evil")], "escapes the target directory"),
    ([_file("a/../../evil")], "escapes the target directory"),
    ([_file("/etc/evil")], "absolute path"),
    ([_link("link", "/etc/passwd")], "links to an absolute path"),
    ([_link("link", "../../etc")], "links outside"),
    ([_link("hard", "../outside", tarfile.LNKTYPE)], "links outside"),
    ([_device()], "device or FIFO"),
])
def test_archive_refuses_escapes_and_leaves_nothing(tmp_path: Path, members, text: str) -> None:  # type: ignore[no-untyped-def]
    stream = _tar(_file("good.txt"), *members)
    with pytest.raises(UnsafeArchive, match=text):
        extract_tar(stream, tmp_path, 1 << 30)
    assert list(tmp_path.iterdir()) == []


def test_archive_refuses_writing_through_an_inner_symlink_to_outside(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    # "d" -> "." is inside; "d/../x" is caught lexically; a chain through a dir symlink must be caught too.
    stream = _tar(_link("d", "."), _file("d/ok.txt"))
    extract_tar(stream, volume, 1 << 30)
    assert (volume / "ok.txt").exists()


def test_archive_larger_than_the_volume_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageTooLarge):
        extract_tar(_tar(_file("big", b"x" * 5000)), tmp_path, 4000)
    assert list(tmp_path.iterdir()) == []


async def test_closing_the_bridge_wakes_a_waiting_reader() -> None:
    """A cancelled import must not leave the transfer thread blocked on the next chunk."""
    import asyncio
    from collections.abc import AsyncIterator

    from importer.bridge import ChunkBridge
    from importer.errors import TransferInterrupted

    async def endless() -> AsyncIterator[bytes]:
        yield b"x" * 10
        await asyncio.Event().wait()
        yield b""

    bridge = ChunkBridge(endless())

    def read_all() -> None:
        while bridge.reader.read(1 << 20):
            pass

    reader = asyncio.ensure_future(asyncio.to_thread(read_all))
    await asyncio.sleep(0.1)
    await bridge.close()
    with pytest.raises(TransferInterrupted):
        await asyncio.wait_for(reader, 5)
