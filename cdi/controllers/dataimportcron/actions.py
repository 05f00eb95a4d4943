"""The vocabulary of a DataImportCron plan: what to create, patch or delete, and which events to record.

`plan` produces these; `controller` applies them in order, each idempotently (AlreadyExists and
NotFound are "already done"). `resource_labels` are the labels every object a cron makes carries:
`cdi.kubevirt.io/dataImportCron=<cron>`, and `cdi.kubevirt.io/dataImportCron.cleanup=true` when its
`retentionPolicy` is `None`, which is what deleting the cron later selects on (upstream's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann


@dataclass(frozen=True)
class Create:
    body: Object


@dataclass(frozen=True)
class Patch:
    api_version: str
    kind: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    api_version: str
    kind: str
    name: str
    unlabel: bool = False  # drop the cron label first, so the deletion does not wake the cron (upstream)
    or_claim: bool = False  # a DataVolume already gone: delete the claim of that name instead


Action = Create | Patch | Delete


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def resource_labels(cron: Object) -> dict[str, str]:
    meta, spec = cron.get("metadata") or {}, cron.get("spec") or {}
    labels = {ann.LABEL_DATA_IMPORT_CRON: str(meta.get("name", ""))}
    if spec.get("retentionPolicy") == "None":
        labels[ann.LABEL_DATA_IMPORT_CRON_CLEANUP] = "true"
    return labels
