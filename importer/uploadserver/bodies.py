"""Request bodies as the pipeline's chunk stream: read from the socket only as fast as the pipeline
consumes (aiohttp pauses the transport when its small buffer is full, so TCP pushes back on the
client), coalesced into pieces of up to `PIECE` bytes, never the whole body in memory.

Read failures (the client or proxy went away, a body shorter than its Content-Length, no data for
`idle_timeout` seconds) become `TransferInterrupted`, upstream's "failed to pull image" family. For
the form endpoints, `form_file` finds the multipart part named `file`. Used by `handlers` and
`resumable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import BodyPartReader, ClientError, web
from aiohttp.http_exceptions import HttpProcessingError

from cdi.contracts.upload_protocol import FORM_FIELD
from importer.errors import TransferInterrupted

PIECE = 1 << 20
ReadFn = Callable[[int], Awaitable[bytes]]
_READ_ERRORS = (OSError, ClientError, HttpProcessingError, ValueError, asyncio.IncompleteReadError)


class CountedBody:
    """Counts what was read, so an interruption can say how far the body got."""

    def __init__(self, read: ReadFn, *, idle_timeout: float | None = None, piece: int = PIECE) -> None:
        self._read = read
        self._idle_timeout = idle_timeout
        self._piece = piece
        self.count = 0

    async def _read_some(self, size: int) -> bytes:
        try:
            async with asyncio.timeout(self._idle_timeout):
                return await self._read(size)
        except TimeoutError as e:
            raise TransferInterrupted(f"upload interrupted: no data for {self._idle_timeout:.0f}s after "
                                      f"{self.count} bytes") from e
        except _READ_ERRORS as e:
            raise TransferInterrupted(f"upload interrupted after {self.count} bytes: unexpected EOF "
                                      f"({type(e).__name__}: {e})") from e

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body in pieces of up to `piece` bytes, ending at EOF."""
        buffer = bytearray()
        while True:
            data = await self._read_some(self._piece - len(buffer))
            if not data:
                break
            self.count += len(data)
            buffer += data
            if len(buffer) >= self._piece:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


def raw_body(request: web.Request, *, idle_timeout: float | None = None) -> CountedBody:
    return CountedBody(request.content.read, idle_timeout=idle_timeout)


class FormError(Exception):
    """The request is not a multipart form with a `file` part (400)."""


async def form_file(request: web.Request) -> CountedBody:
    """The `file` part of a multipart/form-data body; earlier parts are skipped, as upstream does."""
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise FormError(f"no part named {FORM_FIELD!r} in the multipart form")
            if isinstance(part, BodyPartReader) and part.name == FORM_FIELD:
                return CountedBody(part.read_chunk)
            await part.release()
    except (KeyError, ValueError, AssertionError) as e:
        raise FormError(f"not a multipart/form-data request: {e}") from e
    except _READ_ERRORS as e:
        raise TransferInterrupted(f"upload interrupted while reading the form: {e}") from e
