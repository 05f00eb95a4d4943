"""What `kubevirt_cdi_dataimportcron_outdated` says about one cron, pure; the controller publishes it.

Upstream sets the gauge whenever it writes the UpToDate condition (`updateDataImportCronOutdatedMetric`):
1 while the condition is not True, 0 once it is; `pending` is true for an outdated cron that has no
storage class recorded (`storage.import.storageClass`) and names none in its template — it waits for a
default StorageClass, which the alert CDIDataImportCronOutdated deliberately does not count. Here the
same is read off the status and annotations a reconcile has just planned (`Plan`), so the series always
matches what the cron says of itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron import status as st


@dataclass(frozen=True)
class OutdatedSample:
    outdated: bool
    pending: bool


def outdated_sample(doc: Mapping[str, Any], status: Mapping[str, Any],
                    annotations: Mapping[str, str]) -> OutdatedSample | None:
    """The gauge for a cron whose planned `status` and merged `annotations` are given; None while the
    cron has no UpToDate condition yet (upstream has not set the series then either)."""
    condition = st.condition_of(dict(status), st.UP_TO_DATE)
    if condition is None:
        return None
    outdated = condition.get("status") != "True"
    pending = outdated and not annotations.get(ann.ANN_STORAGE_CLASS) and _template_class(doc) is None
    return OutdatedSample(outdated, pending)


def _template_class(doc: Mapping[str, Any]) -> str | None:
    """The template's explicit class (`spec.storage` or `spec.pvc`), as upstream's GetStorageClassFromDVSpec."""
    spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    for section in ("storage", "pvc"):
        name = (spec.get(section) or {}).get("storageClassName")
        if name is not None:
            return str(name)
    return None
