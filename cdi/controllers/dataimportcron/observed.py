"""One reconcile's view of a DataImportCron's world, frozen: what `observe` reads and `plan`, `render` and
`classchange` decide from (pure data, so those modules need nothing of each other to share it), and the
`PollOutcome` the controller's poll produced before."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from cdi.cluster.protocol import Object


@dataclass(frozen=True)
class PollOutcome:
    """What polling the source found: a digest, or why there is none."""

    digest: str | None = None
    reason: str = ""
    message: str = ""
    retryable: bool = True


@dataclass(frozen=True)
class Observed:
    doc: Object  # the cron as stored
    now: datetime
    source_format: str = "pvc"  # the desired class's StorageProfile `dataImportCronSourceFormat`
    storage_class: str | None = None
    snapshot_class: str | None = None
    dv: Object | None = None  # the current import's DataVolume, claim and snapshot
    pvc: Object | None = None
    snapshot: Object | None = None
    data_source: Object | None = None
    adoptable: Object | None = None  # a claim or snapshot already named like the next import
    import_pvcs: tuple[Object, ...] = ()  # everything labelled for this cron, for garbage collection
    import_snapshots: tuple[Object, ...] = ()
    poll: PollOutcome | None = None
    zone: tzinfo = UTC
