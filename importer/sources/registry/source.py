"""The registry source (`IMPORTER_SOURCE=registry`): a container disk's `/disk/` file as a byte stream.

`open()` resolves the reference (`image`), starts the layer walk (`layers`) in a worker thread, waits
until the disk file is found, and yields a `SourceStream` of the disk file's bytes with its size as the
total, so the pipeline detects, decompresses, converts and reports progress exactly as for HTTP.
Unlike upstream, which extracts layers to scratch space and then converts from there, nothing is
staged: a raw or compressed-raw disk streams straight to the volume, and scratch is used only when
the disk's format needs qemu-img (the pipeline decides, as for every source). The stream ends only
after every layer has been read and verified, and the pipeline drains it to the end before it
commits, so a digest mismatch or a second disk found late still leaves no imported volume.

`pullMethod: node` is refused here: it needs the node's container runtime to pull the image and
serve its disk, and this importer has none. Image-config env vars become termination-message
`labels` (upstream's envsToLabels); they are exposed as `RegistrySource.labels` after `open()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cdi.contracts import importer_env as env
from importer.config import ImporterConfig
from importer.errors import ConfigurationError, InvalidImage
from importer.sources.base import SourceStream
from importer.sources.registry.archive import ArchiveStore
from importer.sources.registry.image import resolve_image
from importer.sources.registry.layers import NO_DISK, DiskEntry, LayerWalk
from importer.sources.registry.loopcalls import LoopCalls, Stopped
from importer.sources.registry.manifest import Descriptor, env_labels
from importer.sources.registry.reference import ArchiveReference, parse_reference
from importer.sources.registry.remote import RegistryStore

log = logging.getLogger(__name__)
QUEUE_CHUNKS = 8
PULL_METHOD_NODE = "node"
NODE_PULL_REFUSED = ("pullMethod: node needs a container runtime on the node to pull the image and serve its "
                     "disk to the importer; this CDI runs importers without one (the embedded mode has none). "
                     "Use pullMethod: pod (the default), which pulls the image in the importer itself")

_Item = bytes | DiskEntry | BaseException | None


class _QueueSink:
    """The walk's output, handed to the event loop one chunk at a time (bounded: the thread waits)."""

    def __init__(self, calls: LoopCalls, queue: asyncio.Queue[_Item]) -> None:
        self._calls = calls
        self._queue = queue

    def put(self, item: _Item) -> None:
        self._calls.call(lambda: self._queue.put(item))

    def begin(self, entry: DiskEntry) -> None:
        self.put(entry)

    def write(self, data: bytes) -> None:
        self.put(data)


def _work(walk: LayerWalk, sink: _QueueSink) -> None:
    """The worker thread: walk, then hand over the end of stream, or the error that ended it."""
    try:
        walk.run()
        sink.put(None)
    except Stopped:
        return
    except Exception as e:
        try:
            sink.put(e)
        except Stopped:
            return


async def _chunks(queue: asyncio.Queue[_Item]) -> AsyncIterator[bytes]:
    while (item := await queue.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, bytes):
            yield item


@asynccontextmanager
async def stream_disk(store: RegistryStore | ArchiveStore, layers: tuple[Descriptor, ...]
                      ) -> AsyncIterator[SourceStream]:
    calls = LoopCalls(asyncio.get_running_loop())
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    sink = _QueueSink(calls, queue)
    walk = LayerWalk(layers, store.layer_opener(calls), sink, store.description)
    worker = asyncio.ensure_future(asyncio.to_thread(_work, walk, sink))
    try:
        first = await queue.get()
        if isinstance(first, BaseException):
            raise first
        if not isinstance(first, DiskEntry):
            raise InvalidImage(f"{NO_DISK}: {store.description}")
        yield SourceStream(_chunks(queue), first.size, f"{store.description} /{first.name}")
    finally:
        calls.stop()
        await worker


class RegistrySource:
    kind = env.SOURCE_REGISTRY

    def __init__(self, config: ImporterConfig) -> None:
        if config.pull_method == PULL_METHOD_NODE:
            raise ConfigurationError(NODE_PULL_REFUSED)
        if config.content_type != env.CONTENT_KUBEVIRT:
            raise ConfigurationError(f"Unsupported content type {config.content_type} when importing from "
                                     f"{config.endpoint}: a registry holds disk images (contentType kubevirt)")
        if not config.endpoint:
            raise ConfigurationError("Unable to connect to registry data source: no endpoint given")
        self._config = config
        self.reference = parse_reference(config.endpoint)
        self.labels: dict[str, str] = {}

    def _store(self) -> RegistryStore | ArchiveStore:
        if isinstance(self.reference, ArchiveReference):
            return ArchiveStore(self.reference)
        return RegistryStore(self.reference, self._config)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[SourceStream]:
        async with self._store() as store:
            image = await resolve_image(store, self._config.registry_architecture)
            self.labels = env_labels(image.config.env)
            log.info("importing %s (%s, %d layer(s))%s", store.description, image.digest or "by tag",
                     len(image.manifest.layers), f", labels {self.labels}" if self.labels else "")
            async with stream_disk(store, image.manifest.layers) as stream:
                stream.labels.update(self.labels)
                yield stream
