"""Metric names and the exposition line format shared by the importer (which serves progress) and the
controller (which scrapes it into `DataVolume.status.progress`), and the names of the control plane's own
metrics (`cdi.monitoring` defines and serves them; alert rules and dashboards query them by these names)."""

from __future__ import annotations

import re
from typing import Final

IMPORT_PROGRESS: Final = "kubevirt_cdi_import_progress_total"
CLONE_PROGRESS: Final = "kubevirt_cdi_clone_progress_total"
METRICS_PATH: Final = "/metrics"

# The control plane's metrics, as upstream names them (doc/metrics.md). `DATAIMPORTCRON_OUTDATED` is 1
# while a cron's UpToDate condition is not True, 0 once it is; `pending="true"` marks a cron that waits
# for a default StorageClass (the alert CDIDataImportCronOutdated only counts `pending="false"`).
DATAIMPORTCRON_OUTDATED: Final = "kubevirt_cdi_dataimportcron_outdated"
DATAIMPORTCRON_OUTDATED_HELP: Final = "DataImportCron has an outdated import"
LABEL_NAMESPACE: Final = "namespace"
LABEL_CRON_NAME: Final = "cron_name"
LABEL_PENDING: Final = "pending"


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
