"""Streaming sources, registered by upstream's IMPORTER_SOURCE names: http, s3, gcs and registry.
`blank` (`none`) is not a stream and is handled by `importer.blank`; imageio and vddk are not
supported and are refused as an unknown source.

Sources are imported when asked for, not up front: the S3 and GCS SDKs take a noticeable share of the
importer's start-up, which an HTTP import should not pay."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from cdi.contracts import importer_env as env
from importer.config import ImporterConfig
from importer.sources.base import Source, SourceStream

_REGISTRY: dict[str, tuple[str, str]] = {
    env.SOURCE_HTTP: ("importer.sources.http", "HttpSource"),
    env.SOURCE_S3: ("importer.sources.s3", "S3Source"),
    env.SOURCE_GCS: ("importer.sources.gcs", "GcsSource"),
    env.SOURCE_REGISTRY: ("importer.sources.registry", "RegistrySource"),
}


def source_factory(name: str) -> Callable[[ImporterConfig], Source] | None:
    """The source class for an IMPORTER_SOURCE value, or None when there is no such streaming source."""
    if name not in _REGISTRY:
        return None
    module, attribute = _REGISTRY[name]
    factory: Callable[[ImporterConfig], Source] = getattr(import_module(module), attribute)
    return factory


__all__ = ["Source", "SourceStream", "source_factory"]
