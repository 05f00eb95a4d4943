"""Pure rendering and merging: table layout, describe output, and apply's three-way merge patch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cdi.cli.describe import describe_object, events_section, smart_label
from cdi.cli.merging import LAST_APPLIED, last_applied, three_way_patch, with_last_applied
from cdi.cli.output import format_table, object_name, render_documents
from cdi.cli.tabwriter import align
from cdi.cluster.kinds import resolve

NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)


def test_tables_are_laid_out_like_kubectl() -> None:
    lines, widths = format_table([["NAME", "PHASE", "AGE"], ["fedora", "Succeeded", "5s"], ["a", "", "2d"]])
    assert lines == ["NAME     PHASE       AGE",
                     "fedora   Succeeded   5s",
                     "a                    2d"]
    later, _ = format_table([["x", "Pending", "1s"]], widths)
    assert later == ["x        Pending     1s"]


def test_names_and_documents() -> None:
    assert object_name(resolve("dv"), "fedora") == "datavolume.cdi.kubevirt.io/fedora"
    assert object_name(resolve("pvc"), "fedora") == "persistentvolumeclaim/fedora"
    assert object_name(resolve("sc"), "local") == "storageclass.storage.k8s.io/local"
    one = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    assert render_documents([one], "yaml", single=True).startswith("apiVersion: v1\nkind: ConfigMap\n")
    listed = json.loads(render_documents([one, one], "json", single=False))
    assert listed == {"apiVersion": "v1", "kind": "List", "items": [one, one], "metadata": {"resourceVersion": ""}}


def test_tabwriter_aligns_runs_of_cells_and_nests_columns() -> None:
    assert align(["Name:\tfedora", "Labels:\ta=b", "\tc=d", "Spec:", "  Size:\t1Gi", "  Content Type:\tkubevirt"]) == [
        "Name:    fedora",
        "Labels:  a=b",
        "         c=d",
        "Spec:",
        "  Size:          1Gi",
        "  Content Type:  kubevirt",
    ]


@pytest.mark.parametrize(("field", "label"), [
    ("creationTimestamp", "Creation Timestamp"), ("apiVersion", "API Version"), ("uid", "UID"), ("url", "URL"),
    ("pvcName", "Pvc Name"), ("dataVolumeTTLSeconds", "Data Volume TTL Seconds"),
    ("cdi.kubevirt.io/storage.import.endpoint", "cdi.kubevirt.io/storage.import.endpoint"),
])
def test_smart_labels(field: str, label: str) -> None:
    assert smart_label(field) == label


def test_describe_prints_metadata_tree_conditions_and_events() -> None:
    dv = {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "fedora", "namespace": "vms", "uid": "u-1", "generation": 1, "resourceVersion": "7",
                     "creationTimestamp": "2024-05-10T11:00:00Z", "labels": {"app": "vm", "tier": "gold"},
                     "annotations": {LAST_APPLIED: "{}", "note": "x" * 200},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-0"}]},
        "spec": {"source": {"http": {"url": "https://example.com/f.img"}},
                 "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}},
        "status": {"phase": "Succeeded", "progress": "100.0%",
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Completed", "message": "Done",
                                   "lastTransitionTime": "2024-05-10T11:58:00Z"},
                                  {"type": "Bound", "status": "True", "reason": "Bound",
                                   "message": "PVC fedora Bound", "lastTransitionTime": "2024-05-10T11:01:00Z"}]},
    }
    events = [
        {"type": "Normal", "reason": "ImportSucceeded", "message": "Import Successful",
         "source": {"component": "datavolume-import-controller"},
         "firstTimestamp": "2024-05-10T11:59:55Z", "lastTimestamp": "2024-05-10T11:59:55Z", "count": 1},
        {"type": "Warning", "reason": "ErrImportFailed", "message": "Unable to connect",
         "source": {"component": "datavolume-import-controller"},
         "firstTimestamp": "2024-05-10T11:50:00Z", "lastTimestamp": "2024-05-10T11:57:00Z", "count": 3},
    ]
    assert describe_object(dv, events, NOW) == f"""\
Name:         fedora
Namespace:    vms
Labels:       app=vm
              tier=gold
Annotations:  note: {"x" * 134}...
API Version:  cdi.kubevirt.io/v1beta1
Kind:         DataVolume
Metadata:
  Creation Timestamp:  2024-05-10T11:00:00Z
  Generation:          1
  Owner References:
    API Version:     v1
    Kind:            Pod
    Name:            p
    UID:             u-0
  Resource Version:  7
  UID:               u-1
Spec:
  Source:
    Http:
      URL:  https://example.com/f.img
  Storage:
    Access Modes:
      ReadWriteOnce
    Resources:
      Requests:
        Storage:  10Gi
Status:
  Conditions:
    Type     Status  Reason     Message           Last Transition
    ----     ------  ------     -------           ---------------
    Ready    True    Completed  Done              2024-05-10T11:58:00Z
    Bound    True    Bound      PVC fedora Bound  2024-05-10T11:01:00Z
  Phase:     Succeeded
  Progress:  100.0%
Events:
  Type     Reason           Age               From                          Message
  ----     ------           ----              ----                          -------
  Warning  ErrImportFailed  3m (x3 over 10m)  datavolume-import-controller  Unable to connect
  Normal   ImportSucceeded  5s                datavolume-import-controller  Import Successful
"""


def test_describe_without_events_or_labels() -> None:
    text = describe_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, [], NOW)
    assert text.splitlines() == ["Name:         a", "Namespace:", "Labels:       <none>", "Annotations:  <none>",
                                 "API Version:  v1", "Kind:         ConfigMap", "Metadata:", "Events:  <none>"]
    assert events_section([], NOW) == ["Events:\t<none>"]


MANIFEST: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app": "x"}},
            "data": {"k": "v"}}


@pytest.mark.parametrize(("original", "modified", "current", "patch"), [
    # Nothing changed: no patch.
    (MANIFEST, MANIFEST, {**MANIFEST, "metadata": {**MANIFEST["metadata"], "uid": "u"}}, {}),
    # A new label merges in; labels added by others stay.
    (MANIFEST, {**MANIFEST, "metadata": {"name": "a", "labels": {"app": "x", "tier": "y"}}},
     {**MANIFEST, "metadata": {"name": "a", "labels": {"app": "x", "owner": "ctl"}}},
     {"metadata": {"labels": {"tier": "y"}}}),
    # A label the last manifest set and this one drops is deleted.
    (MANIFEST, {**MANIFEST, "metadata": {"name": "a"}}, MANIFEST, {"metadata": {"labels": None}}),
    # Without a recorded manifest nothing is deleted.
    (None, {**MANIFEST, "metadata": {"name": "a"}}, MANIFEST, {}),
    # Changed and removed data keys.
    ({**MANIFEST, "data": {"k": "v", "old": "1"}}, {**MANIFEST, "data": {"k": "w"}},
     {**MANIFEST, "data": {"k": "v", "old": "1", "status": "kept"}}, {"data": {"k": "w", "old": None}}),
    # Lists are replaced whole, as in a JSON merge patch.
    ({"spec": {"modes": ["a"]}}, {"spec": {"modes": ["a", "b"]}}, {"spec": {"modes": ["a"]}},
     {"spec": {"modes": ["a", "b"]}}),
])
def test_three_way_patch(original: Any, modified: dict[str, Any], current: dict[str, Any],
                         patch: dict[str, Any]) -> None:
    assert three_way_patch(original, modified, current) == patch


def test_last_applied_round_trip() -> None:
    applied = with_last_applied({**MANIFEST, "metadata": {**MANIFEST["metadata"], "annotations": {"a": "b"}}})
    annotations = applied["metadata"]["annotations"]
    assert annotations["a"] == "b" and annotations[LAST_APPLIED].endswith("\n")
    recorded = last_applied(applied)
    assert recorded is not None and LAST_APPLIED not in recorded["metadata"]["annotations"]
    assert with_last_applied(applied) == applied
    assert last_applied({"metadata": {"annotations": {LAST_APPLIED: "not json"}}}) is None
