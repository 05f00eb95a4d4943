"""A minimal client of the resumable chunk protocol, for tests: it asks the server where to resume,
sends fixed-size chunks, and can cut a chunk's connection at chosen stream offsets (mid-body, with
the connection aborted). It records how many bytes it had to send again after each interruption.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.upload.support import RawResponse, raw_request

PATH = "/v1beta1/upload-chunk"


@dataclass
class ChunkUpload:
    port: int
    context: ssl.SSLContext | None
    data: bytes
    chunk: int
    headers: Mapping[str, str] = field(default_factory=dict)
    path: str = PATH
    resent: list[int] = field(default_factory=list)  # bytes sent again after each interruption
    sent: int = 0

    async def offset(self) -> int:
        response = await raw_request(self.port, self.context, "GET", self.path, headers=self.headers)
        assert response is not None and response.status == 200, response
        return int(response.headers["x-upload-offset"])

    async def put(self, offset: int, *, final: bool = False, cut_after: int | None = None) -> RawResponse | None:
        end = min(offset + self.chunk, len(self.data))
        body = self.data[offset:end]
        query = f"?offset={offset}" + ("&final=true" if final else "")
        self.sent += len(body) if cut_after is None else cut_after
        return await raw_request(self.port, self.context, "PUT", self.path + query, headers=self.headers, body=body,
                                 cut_after=cut_after)

    async def run(self, cuts: Iterable[int] = ()) -> RawResponse:
        """Upload everything, cutting the connection when a chunk crosses each offset in `cuts`."""
        pending = sorted(cuts)
        offset = await self.offset()
        while True:
            end = min(offset + self.chunk, len(self.data))
            cut = next((c for c in pending if offset < c < end), None)
            if cut is not None:
                pending.remove(cut)
                await self.put(offset, cut_after=cut - offset)
                resumed = await self.offset()
                assert resumed >= offset, "an acknowledged chunk was lost"
                self.resent.append(cut - resumed)
                offset = resumed
                continue
            response = await self.put(offset, final=end == len(self.data))
            assert response is not None
            if response.status != 200 or end == len(self.data):
                return response
            offset = int(response.headers["x-upload-offset"])
            assert offset == end, response
