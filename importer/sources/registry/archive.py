"""The image store for `oci-archive:` references: an OCI image layout packed in a tar file.

The layout's `index.json` is the root: its entry named by the reference
(`org.opencontainers.image.ref.name`), or its only entry when the reference names none, is then
treated like a registry's root manifest (an image manifest or an index to choose a platform from).
Blobs are the archive's `blobs/<algorithm>/<hex>` members, read in place; the same digest checks and
layer walk apply as for a registry. A missing or unreadable archive is `ImagePullFailed`, with
upstream's wording. Used by `importer.sources.registry.source`.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import IO

from importer.errors import ImagePullFailed, InvalidImage
from importer.sources.registry.image import MAX_DOCUMENT, Fetched
from importer.sources.registry.loopcalls import LoopCalls
from importer.sources.registry.manifest import OCI_INDEX, REF_NAME, Descriptor, ImageIndex, parse_manifest
from importer.sources.registry.overlay import normalize
from importer.sources.registry.reference import ArchiveReference


class ArchiveStore:
    def __init__(self, reference: ArchiveReference) -> None:
        self.description = str(reference)
        self._reference = reference
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}

    async def __aenter__(self) -> ArchiveStore:
        await asyncio.to_thread(self._load)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._tar is not None:
            self._tar.close()

    def _load(self) -> None:
        try:
            self._tar = tarfile.open(self._reference.path, "r:*")
            self._members = {normalize(m.name): m for m in self._tar.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError) as e:
            raise ImagePullFailed(f"failed to pull image: {self.description}: opening the OCI archive: "
                                  f"{type(e).__name__}: {e}") from e

    def _read(self, path: str, limit: int) -> bytes:
        member = self._members.get(path)
        if member is None or self._tar is None:
            raise InvalidImage(f"{self.description} is not a complete OCI image layout: /{path} is missing")
        if member.size > limit:
            raise InvalidImage(f"{self.description}: /{path} is {member.size} bytes, more than the {limit} allowed")
        data = self._tar.extractfile(member)
        return data.read() if data is not None else b""

    @staticmethod
    def _blob_path(descriptor: Descriptor) -> str:
        algorithm, _, hexdigest = descriptor.digest.partition(":")
        return f"blobs/{algorithm}/{hexdigest}"

    def _root(self) -> Fetched:
        what = f"index.json of {self.description}"
        index = parse_manifest(self._read("index.json", MAX_DOCUMENT), OCI_INDEX, what)
        if not isinstance(index, ImageIndex):
            raise InvalidImage(f"{what} is malformed: it is not an image index")
        name = self._reference.name
        entries = [d for d in index.manifests if name is None or d.annotations.get(REF_NAME) == name]
        held = ", ".join(sorted(d.annotations.get(REF_NAME, d.digest) for d in index.manifests)) or "nothing"
        if not entries:
            raise InvalidImage(f"{self.description}: no image named {name!r} in the archive (it holds: {held})"
                               if name else f"{self.description}: the archive holds no image")
        if len(entries) > 1:
            raise InvalidImage(f"{self.description}: the archive holds more than one image ({held}); name one as "
                               f"oci-archive:<path>:<name>")
        entry = entries[0]
        return Fetched(self._read(self._blob_path(entry), MAX_DOCUMENT), entry.media_type, entry.digest)

    async def root(self) -> Fetched:
        return await asyncio.to_thread(self._root)

    async def manifest(self, descriptor: Descriptor) -> Fetched:
        body = await asyncio.to_thread(self._read, self._blob_path(descriptor), MAX_DOCUMENT)
        return Fetched(body, descriptor.media_type, descriptor.digest)

    async def blob(self, descriptor: Descriptor, limit: int) -> bytes:
        return await asyncio.to_thread(self._read, self._blob_path(descriptor), limit)

    def layer_opener(self, calls: LoopCalls) -> ArchiveLayerOpener:
        return ArchiveLayerOpener(self, calls)

    def open_member(self, descriptor: Descriptor) -> IO[bytes]:
        path = self._blob_path(descriptor)
        member = self._members.get(path)
        data = self._tar.extractfile(member) if member is not None and self._tar is not None else None
        if data is None:
            raise InvalidImage(f"{self.description} is not a complete OCI image layout: /{path} is missing")
        return data


class _CheckedReader:
    """Reads a local member, unwinding promptly once the consumer has gone (no loop call to notice it)."""

    start = 0  # an archive's layers are always read whole (its imports are not resumed)

    def __init__(self, inner: IO[bytes], calls: LoopCalls) -> None:
        self._inner = inner
        self._calls = calls

    def read(self, size: int = -1, /) -> bytes:
        self._calls.check()
        return self._inner.read(size)


class ArchiveLayerOpener:
    def __init__(self, store: ArchiveStore, calls: LoopCalls) -> None:
        self._store = store
        self._calls = calls

    @contextmanager
    def open(self, descriptor: Descriptor, start: int = 0) -> Iterator[_CheckedReader]:
        member = self._store.open_member(descriptor)
        try:
            yield _CheckedReader(member, self._calls)
        finally:
            member.close()
