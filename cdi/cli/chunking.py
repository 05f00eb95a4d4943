"""How large each chunk of a resumable upload is (`ChunkSizer`), apart from the HTTP client that sends
them (`cdi.cli.uploadclient`), so that `cdi image-upload` can check `--chunk-size` before it has
imported aiohttp.

Every chunk costs one round trip of idle link while its answer comes back, so unless a size is forced
a chunk is sized to take about `CHUNK_SECONDS` at the rate measured so far: a fast link gets large
chunks (little idle time), a slow one small chunks (little to re-send after an interruption), always
between `MIN_CHUNK` and the server's advertised maximum.
"""

from __future__ import annotations

from cdi.contracts import upload_protocol as up

FIRST_CHUNK = 8 << 20
MIN_CHUNK = 1 << 20
CHUNK_SECONDS = 2.0


class ChunkSizer:
    """The next chunk's size: fixed when asked for, else about `CHUNK_SECONDS` of the recent rate."""

    def __init__(self, fixed: int | None, server_max: int = up.MAX_CHUNK) -> None:
        self._fixed = fixed
        self.server_max = server_max
        self._rate = 0.0  # bytes/s, smoothed

    def next(self) -> int:
        wanted = self._fixed or (int(self._rate * CHUNK_SECONDS) if self._rate else FIRST_CHUNK)
        return max(MIN_CHUNK, min(wanted, self.server_max))

    def observe(self, sent: int, seconds: float) -> None:
        if sent <= 0 or seconds <= 0:
            return
        rate = sent / seconds
        self._rate = rate if not self._rate else 0.5 * self._rate + 0.5 * rate
