"""Which old imports a DataImportCron deletes: upstream's `garbageCollectOldImports`, pure.

The claims and the VolumeSnapshots labelled for the cron are each sorted newest first by their
`storage.import.lastUseTime` annotation (unreadable or missing: oldest) and all but the first
`importsToKeep` are deleted — a claim through its DataVolume (the claim itself when the DataVolume is
already gone), a snapshot directly. Names in `protected` (the current and the last good import) are
never deleted. Used by `plan` when an import has succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.actions import Action, Delete, Event
from cdi.controllers.dataimportcron.schedule import parse_time
from cdi.controllers.meta import annotations_of, name_of

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
_OLDEST = datetime.min.replace(tzinfo=UTC)


def newest_first(objects: Iterable[Object]) -> list[Object]:
    def last_use(obj: Object) -> tuple[datetime, str]:
        return parse_time(annotations_of(obj).get(ann.ANN_LAST_USE_TIME)) or _OLDEST, name_of(obj)

    return sorted(objects, key=last_use, reverse=True)


def garbage(pvcs: Iterable[Object], snapshots: Iterable[Object], keep: int,
            protected: set[str]) -> tuple[list[Action], list[Event]]:
    actions: list[Action] = []
    events: list[Event] = []
    for pvc in newest_first(pvcs)[keep:]:
        if name_of(pvc) not in protected:
            actions.append(Delete("cdi.kubevirt.io/v1beta1", "DataVolume", name_of(pvc), or_claim=True))
            events.append(Event("Normal", "GarbageCollected",
                                f"Deleted outdated import {name_of(pvc)} (importsToKeep: {keep})"))
    for snapshot in newest_first(snapshots)[keep:]:
        if name_of(snapshot) not in protected:
            actions.append(Delete(SNAPSHOT_API, "VolumeSnapshot", name_of(snapshot)))
            events.append(Event("Normal", "GarbageCollected",
                                f"Deleted outdated snapshot {name_of(snapshot)} (importsToKeep: {keep})"))
    return actions, events
