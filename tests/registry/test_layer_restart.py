"""Restart points inside a layer (no network): a walk that streams the disk offers points, and a walk
resumed from any of them at any later offset yields exactly the rest of the disk, still verifies the
layer's digest end to end, still applies the layer's whiteouts to the layers below and the one-file
rule to the rest of the layer; a point that is corrupt or does not fit is refused with the reason."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from importer.errors import ChecksumMismatch, InvalidImage
from importer.sources.registry.layers import LayerWalk, Resume
from importer.sources.registry.manifest import Descriptor
from importer.sources.registry.restart import PointRefused, RestartPoint, RestartPoints, decode
from tests.registry import images as oci
from tests.registry.test_layer_walk import Opener, Sink

SPACING = 64 << 10


def _disk(size: int = 1 << 20) -> bytes:
    rng = random.Random(7)
    return b"".join(rng.randbytes(4096) if rng.random() < 0.5 else bytes(4096) for _ in range(size // 4096))


DISK = _disk()


def _descriptors(layers: list[oci.Blob]) -> tuple[Descriptor, ...]:
    return tuple(Descriptor(b.media_type, b.digest, b.size) for b in layers)


def _all_points(layers: list[oci.Blob]) -> tuple[Sink, list[RestartPoint]]:
    """Walk once, collecting every point the walk offers."""
    points = RestartPoints()
    offered: list[RestartPoint] = []
    original = points.offer
    points.offer = lambda point: (offered.append(point), original(point))[-1]  # type: ignore[method-assign]
    sink = Sink()
    LayerWalk(_descriptors(layers), Opener({b.digest: b.data for b in layers}), sink, "img", points=points,
              spacing=SPACING).run()
    return sink, offered


def _resumed(layers: list[oci.Blob], point: RestartPoint, offset: int, *, ranges: bool = True,
             stored: dict[str, bytes] | None = None) -> tuple[Sink, Opener]:
    opener = Opener(stored or {b.digest: b.data for b in layers}, ranges=ranges)
    sink = Sink()
    LayerWalk(_descriptors(layers), opener, sink, "img", points=RestartPoints(), spacing=SPACING,
              resume=Resume(decode(point.encode()), offset)).run()
    return sink, opener


GZIP_LAYERS = [oci.layer({"disk/disk.img": DISK})]
PLAIN_LAYERS = [oci.layer({"disk/disk.img": DISK}, compression=None)]
# The disk's layer under a top layer, with a whiteout (before the disk) of a stale disk in the base.
STACKED = [oci.layer({"disk/old.img": b"\xaa" * 9000}),
           oci.layer({"disk/.wh.old.img": b"", "disk/disk.img": DISK}),
           oci.layer({"etc/motd": b"hello\n"}, compression=None, directories=("etc/",))]


@pytest.mark.parametrize("layers", [GZIP_LAYERS, PLAIN_LAYERS, STACKED], ids=["gzip", "plain", "stacked"])
def test_a_walk_resumed_from_any_point_yields_the_rest_of_the_disk(layers: list[oci.Blob]) -> None:
    sink, points = _all_points(layers)
    assert bytes(sink.data) == DISK
    assert len(points) >= len(DISK) // (2 * SPACING)  # at the next DEFLATE block end after each spacing
    assert all(b.disk_offset - a.disk_offset >= SPACING for a, b in itertools.pairwise(points))
    rng = random.Random()
    for point in points:
        offset = rng.randint(point.disk_offset, len(DISK))
        resumed, opener = _resumed(layers, point, offset)
        assert resumed.start == offset and resumed.why is None
        assert bytes(resumed.data) == DISK[offset:], (point, offset)
        assert opener.starts[len(layers) - 1 - point.layer] == point.blob_offset > 0


def test_gzip_points_lie_inside_the_single_member() -> None:
    _, points = _all_points(GZIP_LAYERS)
    assert points and all(len(p.decoder_state) > 32 << 10 or p.tar_offset < 32 << 10 for p in points)
    assert all(len(p.encode()) < 40 << 10 for p in points)


def test_a_registry_that_sends_the_whole_blob_reads_the_layer_from_its_start_and_says_so() -> None:
    _, points = _all_points(GZIP_LAYERS)
    resumed, _ = _resumed(GZIP_LAYERS, points[2], points[2].disk_offset, ranges=False)
    assert resumed.start == 0 and bytes(resumed.data) == DISK
    assert resumed.why is not None and "does not honour range requests" in resumed.why


def test_the_layer_digest_is_still_verified_after_a_resume() -> None:
    _, points = _all_points(GZIP_LAYERS)
    blob = GZIP_LAYERS[0]
    damaged = bytearray(blob.data)
    damaged[-20] ^= 0x01  # past the point: in the part a resumed walk fetches
    with pytest.raises((ChecksumMismatch, InvalidImage)) as failure:
        _resumed(GZIP_LAYERS, points[1], points[1].disk_offset, stored={blob.digest: bytes(damaged)})
    assert failure.type is ChecksumMismatch, failure.value


def test_a_second_disk_after_the_point_is_still_refused() -> None:
    layers = [oci.layer({"disk/disk.img": DISK, "disk/extra.img": b"x" * 100})]
    for point in _offered_before_failure(layers):
        with pytest.raises(InvalidImage, match=r"more than one file: /disk/disk\.img and /disk/extra\.img"):
            _resumed(layers, point, point.disk_offset)


def _offered_before_failure(layers: list[oci.Blob]) -> list[RestartPoint]:
    points = RestartPoints()
    offered: list[RestartPoint] = []
    points.offer = offered.append  # type: ignore[method-assign,assignment]
    with pytest.raises(InvalidImage):
        LayerWalk(_descriptors(layers), Opener({b.digest: b.data for b in layers}), Sink(), "img", points=points,
                  spacing=SPACING).run()
    assert offered
    return offered


def test_the_newest_point_at_or_before_an_offset_is_given() -> None:
    _, offered = _all_points(GZIP_LAYERS)
    points = RestartPoints()
    for point in offered:
        points.offer(point)
    assert offered[0].disk_offset > 0 and points.at_or_before(offered[0].disk_offset - 1) is None
    target = offered[3]
    state = points.at_or_before(target.disk_offset + 1)
    assert state is not None and decode(state).disk_offset == target.disk_offset


@pytest.mark.parametrize(("damage", "why"), [
    (lambda s: s[:-1] + bytes([s[-1] ^ 1]), "corrupt (its check does not match)"),
    (lambda s: b"", "holds no restart point"),
    (lambda s: s[:100], "corrupt"),
])
def test_a_damaged_point_is_refused_with_the_reason(damage, why: str) -> None:  # type: ignore[no-untyped-def]
    _, points = _all_points(GZIP_LAYERS)
    with pytest.raises(PointRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        decode(damage(points[1].encode()))


def test_a_zstd_layer_offers_no_points_and_says_why() -> None:
    layers = [oci.layer({"disk/disk.img": DISK}, compression="zstd")]
    points = RestartPoints()
    sink = Sink()
    LayerWalk(_descriptors(layers), Opener({b.digest: b.data for b in layers}), sink, "img", points=points,
              spacing=SPACING).run()
    assert bytes(sink.data) == DISK and points.at_or_before(len(DISK)) is None
    assert points.unavailable is not None and "the disk's layer is zst-compressed" in points.unavailable


def test_a_point_saved_by_another_libcrypto_is_refused() -> None:
    _, points = _all_points(GZIP_LAYERS)
    other = dataclasses.replace(points[1], hash_library="OpenSSL 0.9.8 (another importer)")
    with pytest.raises(PointRefused, match=r"hash state was saved by OpenSSL 0\.9\.8"):
        decode(other.encode())
