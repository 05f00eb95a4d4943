"""The objects a DataImportCron makes, rendered from the cron: pure.

* `import_data_volume`: upstream's `newSourceDataVolume` — the template, named for the digest, a
  registry URL pinned to the digest (tag dropped), the cron's resource labels, the default instance
  type/preference and dynamic-credentials labels of the cron, `storage.bind.immediate.requested`,
  `lastUseTime`, and the cron's `retainAfterCompletion`. HTTP and S3 URLs cannot be pinned: the
  import reads what the URL serves when it runs (a change in between is caught by the next poll).
* `snapshot_of`: the VolumeSnapshot that replaces an imported claim in snapshot format, named like
  the claim, with `lastUseTime`, `sourceVolumeMode` and `advisedRestoreSize`.
* `data_source_plan`: create the managed DataSource when missing; keep its cron labels and point
  `spec.source` at `lastImportedPVC` (a claim, or the snapshot of that name) — only a DataSource that
  carries this cron's label is touched, as upstream does. Its status is the DataSource controller's.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.actions import Action, Create, Event, Patch, resource_labels
from cdi.controllers.dataimportcron.naming import untagged_url
from cdi.controllers.dataimportcron.observed import Observed
from cdi.controllers.dataimportcron.schedule import rfc3339_nano
from cdi.controllers.meta import annotations_of, labels_of, name_of, namespace_of

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
_CRON_LABELS = (*ann.DEFAULT_INSTANCETYPE_LABELS, ann.LABEL_DYNAMIC_CREDENTIALS_SUPPORT)


def import_data_volume(cron: Object, name: str, digest: str, now: datetime) -> Object:
    template = copy.deepcopy((cron.get("spec") or {}).get("template") or {})
    spec: dict[str, Any] = template.get("spec") or {}
    registry = (spec.get("source") or {}).get("registry")
    if registry and registry.get("url"):
        registry["url"] = untagged_url(str(registry["url"]), digest)
    meta = template.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), **resource_labels(cron)}
    labels.update({k: v for k, v in labels_of(cron).items() if k in _CRON_LABELS and v})
    annotations = {**(meta.get("annotations") or {}), ann.ANN_IMMEDIATE_BINDING: "true",
                   ann.ANN_LAST_USE_TIME: rfc3339_nano(now)}
    if retain := annotations_of(cron).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION):
        annotations[ann.ANN_POD_RETAIN_AFTER_COMPLETION] = retain
    return {"apiVersion": CDI_API_VERSION, "kind": "DataVolume",
            "metadata": {"name": name, "namespace": namespace_of(cron), "labels": labels, "annotations": annotations},
            "spec": spec}


def snapshot_of(o: Observed, pvc: Object) -> Object:
    spec = pvc.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    annotations = {ann.ANN_LAST_USE_TIME: rfc3339_nano(o.now),
                   ann.ANN_SOURCE_VOLUME_MODE: str(spec.get("volumeMode") or "Filesystem")}
    if size:
        annotations[ann.ANN_ADVISED_RESTORE_SIZE] = str(size)
    labels = {ann.LABEL_APP: ann.APP_NAME, **resource_labels(o.doc)}
    labels.update({k: v for k, v in labels_of(pvc).items() if k in _CRON_LABELS})
    body: Object = {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
                    "metadata": {"name": name_of(pvc), "namespace": namespace_of(o.doc), "labels": labels,
                                 "annotations": annotations},
                    "spec": {"source": {"persistentVolumeClaimName": name_of(pvc)}}}
    if o.snapshot_class:
        body["spec"]["volumeSnapshotClassName"] = o.snapshot_class
    return body


def desired_source(o: Observed, status: dict[str, Any]) -> dict[str, Any] | None:
    last = status.get("lastImportedPVC")
    if not last:
        return None
    reference = {"namespace": last["namespace"], "name": last["name"]}
    return {"snapshot": reference} if o.source_format == "snapshot" else {"pvc": reference}


def data_source_plan(o: Observed, status: dict[str, Any], events: list[Event]) -> list[Action]:
    name = str((o.doc.get("spec") or {}).get("managedDataSource") or "")
    labels = resource_labels(o.doc)
    source = desired_source(o, status)
    if o.data_source is None:
        events.append(Event("Normal", "DataSourceCreated", f"Created DataSource {name}"))
        return [Create({"apiVersion": CDI_API_VERSION, "kind": "DataSource",
                        "metadata": {"name": name, "namespace": namespace_of(o.doc), "labels": labels},
                        "spec": {"source": source or {}}})]
    current = labels_of(o.data_source)
    if current.get(ann.LABEL_DATA_IMPORT_CRON) != name_of(o.doc):
        return []  # not ours: left alone, as upstream does
    patch: dict[str, Any] = {}
    if any(current.get(k) != v for k, v in labels.items()):
        patch["metadata"] = {"labels": labels}
    old = (o.data_source.get("spec") or {}).get("source") or {}
    if source is not None and {k: v for k, v in old.items() if v} != source:
        # A merge patch cannot drop the other member by omission: null it explicitly.
        patch["spec"] = {"source": {"pvc": None, "snapshot": None, "dataSource": None, **source}}
        kind, target = next(iter(source.items()))
        events.append(Event("Normal", "DataSourceUpdated",
                            f"DataSource {name} now points at {kind} {target['namespace']}/{target['name']}"))
    return [Patch(CDI_API_VERSION, "DataSource", name, patch)] if patch else []
