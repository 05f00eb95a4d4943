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

Resuming after the importer dies (`restart`): the stream's identity is the image's manifest digest (a
tag is resolved again; a manifest is content-addressed, so the same digest is the same disk) and the
disk file's size; the stream offers the walk's restart points (`SourceStream.restart_points`), spaced
an eighth of the checkpoint interval apart (256 KiB to 8 MiB). `open_from` continues one: if the tag
now names another manifest, the point cannot be read, or the image is an oci-archive file, it walks
from the start and says why (`SourceStream.started_over`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cdi.contracts import importer_env as env
from importer.checkpoint import SourceIdentity
from importer.config import ImporterConfig
from importer.errors import ConfigurationError, InvalidImage
from importer.sources.base import SourceStream
from importer.sources.registry.archive import ArchiveStore
from importer.sources.registry.image import ResolvedImage, resolve_image
from importer.sources.registry.layers import NO_DISK, DiskEntry, LayerWalk, Resume
from importer.sources.registry.loopcalls import LoopCalls, Stopped
from importer.sources.registry.manifest import Descriptor, env_labels
from importer.sources.registry.reference import ArchiveReference, parse_reference
from importer.sources.registry.remote import RegistryStore
from importer.sources.registry.restart import PointRefused, RestartPoints, decode

log = logging.getLogger(__name__)
QUEUE_CHUNKS = 8
PULL_METHOD_NODE = "node"
NODE_PULL_REFUSED = ("pullMethod: node needs a container runtime on the node to pull the image and serve its "
                     "disk to the importer; this CDI runs importers without one (the embedded mode has none). "
                     "Use pullMethod: pod (the default), which pulls the image in the importer itself")

MIN_SPACING, MAX_SPACING = 256 << 10, 8 << 20
ARCHIVE_NOT_RESUMED = "an oci-archive: image is not resumed (its layers are read from the file, which names no version)"


@dataclass(frozen=True)
class _Start:
    entry: DiskEntry
    start: int
    why: str | None


_Item = bytes | _Start | BaseException | None


class _QueueSink:
    """The walk's output, handed to the event loop one chunk at a time (bounded: the thread waits)."""

    def __init__(self, calls: LoopCalls, queue: asyncio.Queue[_Item]) -> None:
        self._calls = calls
        self._queue = queue

    def put(self, item: _Item) -> None:
        self._calls.call(lambda: self._queue.put(item))

    def begin(self, entry: DiskEntry, start: int, why: str | None) -> None:
        self.put(_Start(entry, start, why))

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
async def stream_disk(store: RegistryStore | ArchiveStore, layers: tuple[Descriptor, ...], *,
                      digest: str | None = None, spacing: int = MAX_SPACING, resume: Resume | None = None,
                      why: str | None = None) -> AsyncIterator[SourceStream]:
    """The disk's bytes; `digest` (the manifest's) names the stream's version; restart points every
    `spacing` bytes of the disk (0: none, checkpoints are off); `resume`: from a restart point; `why`:
    the reason a stream asked to resume starts at 0 instead."""
    calls = LoopCalls(asyncio.get_running_loop())
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    sink = _QueueSink(calls, queue)
    points = RestartPoints()
    archive = isinstance(store, ArchiveStore)
    if archive:
        points.unavailable = ARCHIVE_NOT_RESUMED
    walk = LayerWalk(layers, store.layer_opener(calls), sink, store.description,
                     points=points if spacing and not archive else None, spacing=spacing, resume=resume)
    worker = asyncio.ensure_future(asyncio.to_thread(_work, walk, sink))
    try:
        first = await queue.get()
        if isinstance(first, BaseException):
            raise first
        if not isinstance(first, _Start):
            raise InvalidImage(f"{NO_DISK}: {store.description}")
        entry = first.entry
        identity = SourceIdentity(store.description, digest=digest, size=entry.size) if digest else None
        yield SourceStream(_chunks(queue), entry.size, f"{store.description} /{entry.name}", identity=identity,
                           start=first.start, restart_points=points, started_over=why or first.why)
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

    def open(self) -> contextlib.AbstractAsyncContextManager[SourceStream]:
        return self._open(None)

    def open_from(self, offset: int, identity: SourceIdentity,
                  state: bytes) -> contextlib.AbstractAsyncContextManager[SourceStream]:
        return self._open((offset, identity, state))

    @property
    def _spacing(self) -> int:
        interval = self._config.checkpoint_interval
        return min(max(interval // 8, MIN_SPACING), MAX_SPACING) if interval else 0

    @asynccontextmanager
    async def _open(self, restart: tuple[int, SourceIdentity, bytes] | None) -> AsyncIterator[SourceStream]:
        async with self._store() as store:
            image = await resolve_image(store, self._config.registry_architecture)
            self.labels = env_labels(image.config.env)
            log.info("importing %s (%s, %d layer(s))%s", store.description, image.digest,
                     len(image.manifest.layers), f", labels {self.labels}" if self.labels else "")
            resume, why = _resume(restart, image, store) if restart is not None else (None, None)
            digest = None if isinstance(store, ArchiveStore) else image.digest
            async with stream_disk(store, image.manifest.layers, digest=digest, spacing=self._spacing,
                                   resume=resume, why=why) as stream:
                stream.labels.update(self.labels)
                yield stream


def _resume(restart: tuple[int, SourceIdentity, bytes], image: ResolvedImage,
            store: RegistryStore | ArchiveStore) -> tuple[Resume | None, str | None]:
    """The walk's restart, or why this attempt reads the image from the start."""
    offset, identity, state = restart
    if isinstance(store, ArchiveStore):
        return None, ARCHIVE_NOT_RESUMED
    if identity.digest != image.digest:
        return None, (f"the source changed since the checkpoint: {store.description} now names manifest "
                      f"{image.digest}, the checkpoint was taken from {identity.digest}")
    try:
        point = decode(state)
    except PointRefused as e:
        return None, str(e)
    layers = image.manifest.layers
    if point.layer >= len(layers) or layers[point.layer].digest != point.digest:
        return None, f"the checkpoint's restart point names layer {point.digest}, which is not where the image has it"
    if not point.disk_offset <= offset <= point.size:
        return None, f"the checkpoint's restart point (disk byte {point.disk_offset}) does not fit its offset {offset}"
    return Resume(point, offset), None
