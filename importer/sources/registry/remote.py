"""The image store for `docker://` references: manifests and blobs from a registry via `client`.

`RegistryStore` answers the resolver on the event loop. `RemoteLayerOpener` gives the layer walk's
worker thread a plain `read()` over a blob download, each read a `LoopCalls.call` of the response's
`readany` (aiohttp buffers up to a megabyte ahead, so the network keeps flowing while the thread
decompresses); a restarted walk asks for a layer from an offset (`RegistryClient.get`'s Range) and
the reader says where the registry's answer starts. Responses still open when the import stops are
released when the store closes.
Used by `importer.sources.registry.source`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import aiohttp

from importer.config import ImporterConfig
from importer.errors import ImagePullFailed
from importer.sources.registry.client import MANIFEST_ACCEPT, RegistryClient
from importer.sources.registry.image import MAX_DOCUMENT, Fetched
from importer.sources.registry.loopcalls import LoopCalls, Stopped
from importer.sources.registry.manifest import Descriptor
from importer.sources.registry.reference import DockerReference


class RegistryStore:
    def __init__(self, reference: DockerReference, config: ImporterConfig) -> None:
        self.description = str(reference)
        self._reference = reference
        self._client = RegistryClient(reference, config)
        self._open: set[aiohttp.ClientResponse] = set()

    async def __aenter__(self) -> RegistryStore:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for response in self._open:
            response.close()
        self._open.clear()
        await self._client.__aexit__(exc_type, exc, tb)

    async def _document(self, reference: str, digest: str | None) -> Fetched:
        response = await self._client.get(f"manifests/{reference}", accept=MANIFEST_ACCEPT)
        content_type = response.headers.get("Content-Type", "")
        body = await self._client.read_all(response, MAX_DOCUMENT, f"manifest {reference}")
        return Fetched(body, content_type, digest)

    async def root(self) -> Fetched:
        return await self._document(self._reference.manifest_reference, self._reference.digest)

    async def manifest(self, descriptor: Descriptor) -> Fetched:
        return await self._document(descriptor.digest, descriptor.digest)

    async def blob(self, descriptor: Descriptor, limit: int) -> bytes:
        if descriptor.size > limit:
            raise ImagePullFailed(f"failed to pull image: {self.description}: blob {descriptor.digest} is "
                                  f"{descriptor.size} bytes, more than the {limit} allowed")
        response = await self._client.get(f"blobs/{descriptor.digest}")
        return await self._client.read_all(response, limit, f"blob {descriptor.digest}")

    async def open_blob(self, descriptor: Descriptor, start: int = 0) -> aiohttp.ClientResponse:
        response = await self._client.get(f"blobs/{descriptor.digest}", start=start)
        self._open.add(response)
        return response

    async def release(self, response: aiohttp.ClientResponse) -> None:
        self._open.discard(response)
        response.release()

    def layer_opener(self, calls: LoopCalls) -> RemoteLayerOpener:
        return RemoteLayerOpener(self, self._client, calls)


class _BlobReader:
    def __init__(self, response: aiohttp.ClientResponse, client: RegistryClient, calls: LoopCalls,
                 what: str) -> None:
        self._response = response
        self._client = client
        self._calls = calls
        self._what = what
        self._buffer = memoryview(b"")
        self.start = client.range_start(response)

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer:
            chunk = self._calls.call(lambda: self._client.read_chunk(self._response, self._what))
            if not chunk:
                return b""
            self._buffer = memoryview(chunk)
        size = len(self._buffer) if size < 0 else size
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(piece)


class RemoteLayerOpener:
    def __init__(self, store: RegistryStore, client: RegistryClient, calls: LoopCalls) -> None:
        self._store = store
        self._client = client
        self._calls = calls

    @contextmanager
    def open(self, descriptor: Descriptor, start: int = 0) -> Iterator[_BlobReader]:
        response = self._calls.call(lambda: self._store.open_blob(descriptor, start))
        try:
            yield _BlobReader(response, self._client, self._calls, f"blob {descriptor.digest}")
        finally:
            try:
                self._calls.call(lambda: self._store.release(response))
            except Stopped:
                pass  # the store releases what is left open when it closes
