"""`CheckedStream`: the stored-digest check shared by the S3 and GCS sources, driven directly with
in-memory chunks (the importer runs in test_s3_import/test_gcs_import exercise it over the wire)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from importer.errors import ChecksumMismatch, InvalidImage
from importer.sources.objectstore import CheckedStream, StoredDigest

CHUNKS = [bytes([i]) * 1000 for i in range(10)]
DATA = b"".join(CHUNKS)


async def produce(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def md5_digest(data: bytes) -> StoredDigest:
    return StoredDigest("md5", hashlib.md5(data).digest(), "the ETag")


async def test_matching_bytes_pass_through_unchanged() -> None:
    stream = CheckedStream(produce(CHUNKS), md5_digest(DATA), "s3://b/k", len(DATA))
    assert [chunk async for chunk in stream.chunks()] == CHUNKS


async def test_mismatch_at_the_end_names_both_digests() -> None:
    stream = CheckedStream(produce(CHUNKS), md5_digest(b"other"), "s3://b/k", len(DATA))
    with pytest.raises(ChecksumMismatch) as failure:
        async for _ in stream.chunks():
            pass
    assert failure.value.message == (
        f"checksum mismatch: expected md5:{hashlib.md5(b'other').hexdigest()}, calculated "
        f"md5:{hashlib.md5(DATA).hexdigest()} (the ETag of s3://b/k; the object's bytes do not match the digest "
        "the object store keeps for it)")


async def test_a_failure_midway_becomes_a_mismatch_when_the_rest_disagrees() -> None:
    stream = CheckedStream(produce(CHUNKS), md5_digest(b"other"), "s3://b/k", len(DATA))
    reader = stream.chunks()
    await anext(reader)
    symptom = InvalidImage("gz stream is corrupt")
    with pytest.raises(ChecksumMismatch) as failure:
        await stream.settle(symptom)
    assert failure.value.__cause__ is symptom


async def test_a_failure_midway_stands_when_the_bytes_are_right() -> None:
    stream = CheckedStream(produce(CHUNKS), md5_digest(DATA), "s3://b/k", len(DATA))
    await anext(stream.chunks())
    await stream.settle(InvalidImage("not an image"))  # nothing raised: the image itself is bad


async def test_no_long_download_just_to_settle() -> None:
    stream = CheckedStream(produce(CHUNKS), md5_digest(b"other"), "s3://b/k", len(DATA))
    await anext(stream.chunks())
    await stream.settle(InvalidImage("too big"), limit=1000)  # 9000 bytes remain: not read


async def test_without_a_digest_nothing_is_checked() -> None:
    stream = CheckedStream(produce(CHUNKS), None, "s3://b/k")
    assert b"".join([chunk async for chunk in stream.chunks()]) == DATA
    await stream.settle(InvalidImage("bad"))
