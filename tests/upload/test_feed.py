"""The resumable upload's byte feed (`importer.uploadserver.feed`) on its own: a piece counts only once
the pipeline took it, a withdrawn offer is never delivered, and an idle or aborted feed fails the
pipeline side instead of hanging it."""

from __future__ import annotations

import asyncio

import pytest

from importer.errors import TransferInterrupted
from importer.uploadserver.feed import ChunkFeed, FeedClosed


async def test_offers_are_counted_when_taken_and_withdrawn_when_cancelled() -> None:
    feed = ChunkFeed(idle_timeout=5)
    chunks = feed.chunks()
    offer = asyncio.create_task(feed.offer(b"abc"))
    await asyncio.sleep(0.01)
    assert feed.offset == 0 and not offer.done()
    assert await anext(chunks) == b"abc"
    await offer
    assert feed.offset == 3
    stale = asyncio.create_task(feed.offer(b"lost"))
    await asyncio.sleep(0.01)
    stale.cancel()  # its connection dropped before the pipeline took the piece
    with pytest.raises(asyncio.CancelledError):
        await stale
    offer = asyncio.create_task(feed.offer(b"def"))
    assert await anext(chunks) == b"def"
    await offer
    await feed.end()
    assert [piece async for piece in chunks] == []
    assert feed.offset == 6
    with pytest.raises(FeedClosed):
        await feed.offer(b"late")


async def test_idle_and_aborted_feeds_fail_the_pipeline_side() -> None:
    idle = ChunkFeed(idle_timeout=0.05)
    with pytest.raises(TransferInterrupted, match="no chunk arrived"):
        await anext(idle.chunks())
    aborted = ChunkFeed(idle_timeout=5)
    waiting = asyncio.create_task(anext(aborted.chunks()))
    await asyncio.sleep(0.01)
    await aborted.abort("upload cancelled by the client")
    with pytest.raises(TransferInterrupted, match="cancelled"):
        await waiting
    closed = ChunkFeed(idle_timeout=5)
    offer = asyncio.create_task(closed.offer(b"x"))
    await asyncio.sleep(0.01)
    await closed.close()
    with pytest.raises(FeedClosed):
        await offer
