"""Streaming sources, registered by upstream's IMPORTER_SOURCE names: http, s3, gcs and registry.
`blank` (`none`) is not a stream and is handled by `importer.blank`; imageio and vddk are not
supported and are refused as an unknown source."""

from __future__ import annotations

from collections.abc import Callable

from cdi.contracts import importer_env as env
from importer.config import ImporterConfig
from importer.sources.base import Source, SourceStream
from importer.sources.gcs import GcsSource
from importer.sources.http import HttpSource
from importer.sources.registry import RegistrySource
from importer.sources.s3 import S3Source

SOURCES: dict[str, Callable[[ImporterConfig], Source]] = {
    env.SOURCE_HTTP: HttpSource,
    env.SOURCE_S3: S3Source,
    env.SOURCE_GCS: GcsSource,
    env.SOURCE_REGISTRY: RegistrySource,
}

__all__ = ["SOURCES", "Source", "SourceStream"]
