"""Streaming sources, registered by upstream's IMPORTER_SOURCE names. `blank` (`none`) is not a stream
and is handled by `importer.blank`; S3, GCS and registry sources arrive with their issue."""

from __future__ import annotations

from collections.abc import Callable

from cdi.contracts import importer_env as env
from importer.config import ImporterConfig
from importer.sources.base import Source, SourceStream
from importer.sources.http import HttpSource

SOURCES: dict[str, Callable[[ImporterConfig], Source]] = {
    env.SOURCE_HTTP: HttpSource,
}

__all__ = ["SOURCES", "Source", "SourceStream"]
