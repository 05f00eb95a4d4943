"""Metric names and the exposition line format shared by the importer (which serves progress) and the
controller (which scrapes it into `DataVolume.status.progress`)."""

from __future__ import annotations

import re
from typing import Final

IMPORT_PROGRESS: Final = "kubevirt_cdi_import_progress_total"
CLONE_PROGRESS: Final = "kubevirt_cdi_clone_progress_total"
METRICS_PATH: Final = "/metrics"


def progress_line(metric: str, owner_uid: str, percent: float) -> str:
    return f'{metric}{{ownerUID="{owner_uid}"}} {percent:.2f}'


def parse_progress(text: str, owner_uid: str) -> float | None:
    """The progress percentage for `owner_uid` in a metrics page, as upstream's controller reads it."""
    pattern = re.compile(
        rf'({IMPORT_PROGRESS}|{CLONE_PROGRESS})\{{ownerUID="{re.escape(owner_uid)}"\}} (\d{{1,3}}\.?\d*)')
    match = pattern.search(text)
    return float(match.group(2)) if match else None


def format_progress(percent: float) -> str:
    """`DataVolume.status.progress` as upstream writes it ("45.27%")."""
    return f"{percent:.2f}%"
