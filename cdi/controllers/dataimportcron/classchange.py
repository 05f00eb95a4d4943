"""When the storage class a DataImportCron imports into changes: upstream's `deleteOutdatedPendingPvc`
and `handleStorageClassChange`, pure.

The desired class is the template's, else the virt-default or default class (`observe`); the class of
the current sources is recorded on the cron as `storage.import.storageClass`. A current claim still
Pending on another class is deleted. When the desired class differs from the recorded one, the
current digest's snapshot, DataVolume and claim are deleted first, and only once they are gone is the
new class recorded — the digest is then imported again on the new class. Used by `plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.api.meta import CDI_API_VERSION
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.actions import Action, Delete, Event
from cdi.controllers.dataimportcron.observed import Observed
from cdi.controllers.meta import annotations_of, labels_of, name_of

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


@dataclass(frozen=True)
class ClassChange:
    actions: tuple[Action, ...] = ()  # deletions to make before anything else (then wake again)
    events: tuple[Event, ...] = ()
    record: str | None = None  # the class to record in `storage.import.storageClass`


def class_change(o: Observed) -> ClassChange:
    desired = o.storage_class
    if not desired:
        return ClassChange()
    pvc = o.pvc
    if pvc is not None and (pvc.get("status") or {}).get("phase") == "Pending" and \
            (pvc.get("spec") or {}).get("storageClassName") not in (None, desired) and \
            labels_of(pvc).get(ann.LABEL_DATA_IMPORT_CRON) == name_of(o.doc):
        return ClassChange((Delete("v1", "PersistentVolumeClaim", name_of(pvc)),))
    recorded = annotations_of(o.doc).get(ann.ANN_STORAGE_CLASS)
    if recorded == desired:
        return ClassChange()
    leftovers: list[Action] = []
    if recorded:
        if o.snapshot is not None:
            leftovers.append(Delete(SNAPSHOT_API, "VolumeSnapshot", name_of(o.snapshot)))
        if o.dv is not None:
            leftovers.append(Delete(CDI_API_VERSION, "DataVolume", name_of(o.dv)))
        if o.pvc is not None:
            leftovers.append(Delete("v1", "PersistentVolumeClaim", name_of(o.pvc)))
    if leftovers:
        message = (f"Storage class changed from {recorded} to {desired}: "
                   f"the current import is deleted and imported again")
        return ClassChange(tuple(leftovers), (Event("Normal", "StorageClassChanged", message),))
    return ClassChange(record=desired)
