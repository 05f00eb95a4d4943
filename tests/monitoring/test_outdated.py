"""`kubevirt_cdi_dataimportcron_outdated` from a cron's planned status, as a table: upstream's
`updateDataImportCronOutdatedMetric` (1 unless UpToDate is True; pending only while no storage class is
known for the import)."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.outdated import OutdatedSample, outdated_sample


def doc(template_class: str | None = None, section: str = "storage") -> dict[str, Any]:
    volume: dict[str, Any] = {"resources": {"requests": {"storage": "1Gi"}}}
    if template_class is not None:
        volume["storageClassName"] = template_class
    return {"metadata": {"name": "fedora-cron", "namespace": "default"},
            "spec": {"template": {"spec": {"source": {"registry": {"url": "docker://r/x"}}, section: volume}}}}


def up_to_date(status: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Progressing", "status": "False", "reason": "NoImport"},
                           {"type": "UpToDate", "status": status, "reason": reason}]}


RECORDED = {ann.ANN_STORAGE_CLASS: "local"}


@pytest.mark.parametrize(("cron", "status", "annotations", "expected"), [
    # an outdated cron with no class anywhere waits for a default StorageClass: pending
    (doc(), up_to_date("False", "Outdated"), {}, OutdatedSample(outdated=True, pending=True)),
    (doc(), up_to_date("False", "NoDigest"), {}, OutdatedSample(outdated=True, pending=True)),
    # a class recorded by the controller, or named in the template: outdated for real (what the alert counts)
    (doc(), up_to_date("False", "Outdated"), RECORDED, OutdatedSample(outdated=True, pending=False)),
    (doc("fast"), up_to_date("False", "ImportProgressing"), {}, OutdatedSample(outdated=True, pending=False)),
    (doc("fast", "pvc"), up_to_date("False", "Outdated"), {}, OutdatedSample(outdated=True, pending=False)),
    # up to date: 0, never pending
    (doc(), up_to_date("True", "UpToDate"), {}, OutdatedSample(outdated=False, pending=False)),
    (doc(), up_to_date("True", "UpToDate"), RECORDED, OutdatedSample(outdated=False, pending=False)),
    # no UpToDate condition yet: no series
    (doc(), {}, {}, None),
])
def test_outdated_sample(cron: dict[str, Any], status: dict[str, Any], annotations: dict[str, str],
                         expected: OutdatedSample | None) -> None:
    assert outdated_sample(cron, status, annotations) == expected
