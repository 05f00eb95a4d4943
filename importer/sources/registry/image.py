"""Resolving a reference to one image: root manifest → (index → platform entry) → manifest → config.

Stores (`remote.RegistryStore` for `docker://`, `archive.ArchiveStore` for `oci-archive:`) only fetch
bytes; this module verifies each document against the digest that names it (the root too when the
reference pins a digest), parses it with `manifest`, follows an index to the requested architecture
(the host's when none was requested) and applies upstream's checks to the chosen image's config.
The layer walk (`layers`) then reads the layers through the store's `LayerOpener`.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from importer.errors import InvalidImage
from importer.sources.registry.blobs import RawReader, verify_bytes
from importer.sources.registry.manifest import (
    INDEX_TYPES,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    Platform,
    check_config,
    host_platform,
    parse_config,
    parse_manifest,
    select_platform,
)

log = logging.getLogger(__name__)
MAX_DOCUMENT = 4 << 20  # containers/image's limit for manifests and configs


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str
    digest: str | None  # the digest the bytes must have, when something names them by digest


class LayerBlob(RawReader, Protocol):
    """A layer blob's bytes from `start` on (0 when the store sent the whole blob)."""

    start: int


class LayerOpener(Protocol):
    """Sync access to layer blobs for the layer walk's worker thread; `start`: ask for the blob from
    that offset (a restarted walk), which a store may answer with the whole blob."""

    def open(self, descriptor: Descriptor, start: int = 0) -> AbstractContextManager[LayerBlob]: ...


class ImageStore(Protocol):
    description: str

    async def root(self) -> Fetched: ...
    async def manifest(self, descriptor: Descriptor) -> Fetched: ...
    async def blob(self, descriptor: Descriptor, limit: int) -> bytes: ...


@dataclass(frozen=True)
class ResolvedImage:
    manifest: ImageManifest
    config: ImageConfig
    digest: str  # the chosen manifest's (a restart's identity: a tag may move)


def _checked(fetched: Fetched, what: str, size: int | None = None) -> ImageManifest | ImageIndex:
    if fetched.digest is not None:
        verify_bytes(fetched.body, fetched.digest, what, size=size)
    return parse_manifest(fetched.body, fetched.content_type, what)


async def resolve_image(store: ImageStore, requested_architecture: str) -> ResolvedImage:
    what = f"the manifest of {store.description}"
    root = await store.root()
    document = _checked(root, what)
    digest = root.digest or f"sha256:{hashlib.sha256(root.body).hexdigest()}"  # a tag's manifest, as pulled
    if isinstance(document, ImageIndex):
        wanted = Platform(requested_architecture) if requested_architecture else host_platform()
        entry = select_platform(document, wanted)
        log.info("image index: chose %s for %s/%s", entry.digest, wanted.os, wanted.architecture)
        what = f"the {wanted.architecture} manifest ({entry.digest}) of {store.description}"
        document = _checked(await store.manifest(entry), what, entry.size)
        digest = entry.digest
        if isinstance(document, ImageIndex) or entry.media_type in INDEX_TYPES:
            raise InvalidImage(f"{what} is another image index; nested indexes are not supported")
    config_what = f"the image config ({document.config.digest}) of {store.description}"
    body = await store.blob(document.config, MAX_DOCUMENT)
    verify_bytes(body, document.config.digest, config_what, size=document.config.size)
    config = parse_config(body, config_what)
    check_config(config, requested_architecture)
    return ResolvedImage(document, config, digest)
