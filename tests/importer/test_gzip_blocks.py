"""gzip restarted inside a member (`importer.inflate`, `importer.gzipblocks`): raw inflate through the
system zlib stops at every DEFLATE block boundary of real `gzip -1/-6/-9` streams (stored, fixed and
dynamic blocks; boundaries on a byte edge and with bits pending), and an inflater restarted at each
of them from the recorded input offset, bits and window finishes with zlib's own bytes. Through the
importer's reader: records inside a single member at every read size, each of which a fresh reader
continues to the image's bytes with its trailer checked; a corrupt or misfitting state is refused
before anything is fetched, a state from another stream fails at the trailer, never succeeds; and
without the system zlib the reader falls back to member ends and says why."""

from __future__ import annotations

import io
import itertools
import random
import subprocess
import zlib
from dataclasses import dataclass

import pytest

from importer import gzipblocks, inflate
from importer.checkpoint import Checkpoint, SourceIdentity
from importer.errors import InvalidImage
from importer.formats import Compression, DecompressingReader
from importer.gzipblocks import restart_problem
from importer.inflate import Inflater
from importer.resume import Observed, Outcome, decide

MiB = 1 << 20


@pytest.fixture(scope="module")
def data() -> bytes:
    """Random blocks (stored when compressed fast), zeros and text (dynamic and fixed blocks)."""
    rng = random.Random(15)
    parts = []
    for _ in range(40):
        kind = rng.random()
        parts.append(rng.randbytes(48 << 10) if kind < 0.4 else bytes(96 << 10) if kind < 0.6 else
                     b"".join(b"line %d of the disk, %s\n" % (i, rng.choice([b"ok", b"fine", b"good"]))
                              for i in range(2000)))
    return b"".join(parts)


@pytest.fixture(scope="module")
def streams(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    raw = tmp_path_factory.mktemp("gz") / "disk.raw"
    raw.write_bytes(data)
    made = {f"gzip -{level}": subprocess.run(["gzip", "-c", "-n", f"-{level}", str(raw)], capture_output=True,
                                             check=True).stdout for level in (1, 6, 9)}
    # Full flushes after pieces of 100,000 and 60 bytes: empty stored blocks, byte-aligned block ends, and
    # fixed-code blocks (what zlib writes for a few bytes).
    flushed, cuts = zlib.compressobj(6, zlib.DEFLATED, 31), [0]
    while cuts[-1] < len(data):
        cuts.append(min(len(data), cuts[-1] + (100_000 if len(cuts) % 2 else 60)))
    made["full flushes"] = b"".join(flushed.compress(data[a:b]) + flushed.flush(zlib.Z_FULL_FLUSH)
                                    for a, b in itertools.pairwise(cuts)) + flushed.flush()
    return made


@dataclass(frozen=True)
class Point:
    output: int  # decompressed bytes before the boundary
    offset: int  # offset in the DEFLATE data of the first byte not taken
    bits: int
    byte: int
    window: bytes
    block_type: int  # of the block that starts here


def block_boundaries(deflate: bytes) -> tuple[bytes, list[Point]]:
    inflater, out, points = Inflater(), bytearray(), list[Point]()
    fed = 0
    while not inflater.eof:
        if inflater.needs_input:
            inflater.feed(deflate[fed:fed + (64 << 10)])
            fed = min(fed + (64 << 10), len(deflate))
        out += inflater.inflate(MiB, stop_at_block=True)
        if inflater.at_block_boundary:
            bits, byte = inflater.position()
            offset = fed - len(inflater.unconsumed)
            following = (byte >> (8 - bits) if bits else 0) | deflate[offset] << bits
            point = Point(len(out), offset, bits, byte, inflater.window(), following >> 1 & 3)
            if not points or points[-1] != point:
                points.append(point)
    return bytes(out), points


@pytest.mark.parametrize("name", ["gzip -1", "gzip -6", "gzip -9", "full flushes"])
def test_an_inflater_restarted_at_every_block_boundary_finishes_with_zlibs_bytes(
        name: str, streams: dict[str, bytes], data: bytes) -> None:
    deflate = streams[name][10:-8]  # `gzip -n` and zlib write a bare 10-byte header
    out, points = block_boundaries(deflate)
    assert out == data == zlib.decompress(streams[name], 31)
    assert len(points) > 3
    for point in points:
        assert point.window == data[max(0, point.output - (32 << 10)):point.output]
        restarted = Inflater()
        restarted.restart(point.bits, point.byte, point.window)
        restarted.feed(deflate[point.offset:] + streams[name][-8:])
        rest = bytearray()
        while piece := restarted.inflate(MiB):
            rest += piece
        assert restarted.eof and restarted.unconsumed == streams[name][-8:]
        assert bytes(rest) == data[point.output:], (name, point.offset)


def test_the_streams_have_stored_fixed_and_dynamic_blocks_and_boundaries_on_and_off_byte_edges(
        streams: dict[str, bytes]) -> None:
    points = [p for blob in streams.values() for p in block_boundaries(blob[10:-8])[1]]
    assert {p.block_type for p in points} >= {0, 1, 2}
    assert any(p.bits == 0 for p in points) and any(p.bits for p in points)


def read_all(blob: bytes, size: int) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """The output and, at each restart point, (output so far, wire offset, decoder state)."""
    source = io.BytesIO(blob)
    reader = DecompressingReader(Compression.GZIP, source)
    out, points = bytearray(), []
    while piece := reader.read(size):
        out += piece
        carry = reader.boundary()
        if carry is not None:
            points.append((len(out), source.tell() - len(carry), reader.state()))
    return bytes(out), points


@pytest.mark.parametrize("size", [MiB, 100_000, 4096])
@pytest.mark.parametrize("name", ["gzip -1", "gzip -9", "full flushes", "members"])
def test_a_reader_restarted_at_any_record_inside_a_member_finishes_the_image(
        name: str, size: int, streams: dict[str, bytes], data: bytes) -> None:
    blob = streams[name] if name != "members" else streams["gzip -1"] + b"\0" * 7 + streams["gzip -6"]
    expected = data if name != "members" else data + data
    out, points = read_all(blob, size)
    assert out == expected
    inside = [p for p in points if p[2]]
    assert len(inside) >= 3 and all(len(p[2]) <= (32 << 10) + 64 for p in points)
    for done, wire, state in points[:: max(1, len(points) // 12)]:
        assert done <= len(expected)
        reader = DecompressingReader(Compression.GZIP, io.BytesIO(blob[wire:]), at_boundary=True, state=state)
        assert out[:done] + reader.read() == expected, (wire, len(state))
    if name == "members":
        assert any(not p[2] and p[0] == len(data) for p in points)  # the member's end


def record(state: bytes, target_offset: int = 1 << 30) -> Checkpoint:
    return Checkpoint(SourceIdentity("http://h/d.gz", etag='"1"'), "raw", "gz", wire_offset=4096,
                      target_offset=target_offset, decoder_state=state)


def seen(state: bytes, target_offset: int = 1 << 30) -> Observed:
    return Observed(record(state, target_offset), None, True, "", "http", True, "")


def a_state(streams: dict[str, bytes], size: int = 100_000) -> tuple[int, int, bytes]:
    _, points = read_all(streams["gzip -6"], size)
    return next(p for p in points if p[2] and p[0] > (64 << 10))


def test_a_good_state_resumes_and_a_corrupt_or_misfitting_one_starts_over_with_the_reason(
        streams: dict[str, bytes]) -> None:
    done, _, state = a_state(streams)
    assert decide(seen(state)).outcome is Outcome.RESUMED and restart_problem(state, done) is None
    flipped = state[:40] + bytes([state[40] ^ 1]) + state[41:]
    for bad, why in [(flipped, "check does not match"), (state[:-5], "check does not match"), (b"GZB1", "check"),
                     (state, "more was decompressed than the disk holds")]:
        decision = decide(seen(bad, target_offset=done - 1))
        assert decision.outcome is Outcome.STARTED_OVER and decision.reason is not None and why in decision.reason
    with pytest.raises(InvalidImage, match="corrupt"):
        DecompressingReader(Compression.GZIP, io.BytesIO(b""), at_boundary=True, state=flipped)


def test_a_state_from_another_stream_fails_at_the_trailer_and_never_yields_the_image(
        streams: dict[str, bytes]) -> None:
    done, wire, _ = a_state(streams)
    _, others = read_all(streams["gzip -1"], 100_000)
    other_state = next(p[2] for p in others if p[2] and p[0] > done)
    with pytest.raises(InvalidImage, match="gz stream is corrupt"):
        DecompressingReader(Compression.GZIP, io.BytesIO(streams["gzip -6"][wire:]), at_boundary=True,
                            state=other_state).read()


@pytest.mark.parametrize(("damage", "why"), [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:-8] + bytes([b[-8] ^ 1]) + b[-7:], "incorrect data check"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "incorrect length check"),
    (lambda b: b[:30_000] + bytes([b[30_000] ^ 0x55]) + b[30_001:], "corrupt"),
    (lambda b: b + b"garbage after the member", "incorrect header check"),
])
def test_damaged_streams_are_refused(streams: dict[str, bytes], damage: object, why: str) -> None:
    assert callable(damage)
    with pytest.raises(InvalidImage, match=why):
        DecompressingReader(Compression.GZIP, io.BytesIO(damage(streams["gzip -6"]))).read()


def test_header_fields_are_skipped_and_the_header_crc_checked(data: bytes) -> None:
    deflate = zlib.compress(data[:200_000], 6, wbits=-15)
    head = b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + b"\0" * 6 + b"\x05\x00extra" + b"name\0" + b"x" * 70_000 + b"\0"
    trailer = zlib.crc32(data[:200_000]).to_bytes(4, "little") + (200_000).to_bytes(4, "little")
    good = head + (zlib.crc32(head) & 0xFFFF).to_bytes(2, "little") + deflate + trailer
    assert DecompressingReader(Compression.GZIP, io.BytesIO(good)).read() == data[:200_000]
    bad = head + ((zlib.crc32(head) + 1) & 0xFFFF).to_bytes(2, "little") + deflate + trailer
    with pytest.raises(InvalidImage, match="header crc mismatch"):
        DecompressingReader(Compression.GZIP, io.BytesIO(bad)).read()


def test_without_the_system_zlib_gzip_restarts_only_at_member_ends_and_says_why(
        streams: dict[str, bytes], data: bytes, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    state = a_state(streams)[2]
    why = "the system zlib (libz.so.1) cannot be used for block-boundary checkpoints: not found"
    monkeypatch.setattr(inflate, "unavailable", lambda: why)
    monkeypatch.setattr(gzipblocks, "unavailable", lambda: why)
    out, points = read_all(streams["gzip -6"] + streams["gzip -1"], MiB)
    assert out == data + data and not any(p[2] for p in points)
    assert {p[0] for p in points} == {len(data), 2 * len(data)}  # member ends only
    assert "checkpointed at member ends only" in caplog.text
    decision = decide(seen(state))
    assert decision.outcome is Outcome.STARTED_OVER and decision.reason == why
