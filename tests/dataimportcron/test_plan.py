"""The DataImportCron planner as tables: observed state in, upstream's conditions, status fields,
actions and events out. No cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.actions import Create, Delete, Patch
from cdi.controllers.dataimportcron.collect import garbage
from cdi.controllers.dataimportcron.observed import Observed, PollOutcome
from cdi.controllers.dataimportcron.plan import plan, poll_due

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
FIRST, SECOND = "fedora-" + "a" * 12, "fedora-" + "b" * 12


def cron(annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
            "metadata": {"name": "fedora-cron", "namespace": "ns", "resourceVersion": "1",
                         "annotations": annotations or {}},
            "spec": {"schedule": "0 */12 * * *", "managedDataSource": "fedora",
                     "template": {"spec": {"source": {"registry": {"url": "docker://r.example/fedora:41"}}}}, **spec},
            "status": status or {}}


def dv(name: str, phase: str, running: tuple[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if running:
        status["conditions"] = [{"type": "Running", "status": "False", "reason": running[0], "message": running[1]}]
    return {"kind": "DataVolume", "metadata": {"name": name, "namespace": "ns"}, "status": status}


def pvc(name: str, last_use: str = "2026-11-21T05:00:00.000000Z") -> dict[str, Any]:
    return {"kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "ns",
            "labels": {ann.LABEL_DATA_IMPORT_CRON: "fedora-cron"}, "annotations": {ann.ANN_LAST_USE_TIME: last_use}},
            "spec": {}, "status": {"phase": "Bound"}}


def ours() -> dict[str, Any]:
    return {"metadata": {"name": "fedora", "labels": {ann.LABEL_DATA_IMPORT_CRON: "fedora-cron"}}, "spec": {"source": {}}}


def reasons(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def importing(digest: str = A, name: str = FIRST) -> dict[str, Any]:
    return {"currentImports": [{"DataVolumeName": name, "Digest": digest}]}


def test_poll_is_due_at_first_and_at_next_cron_time() -> None:
    assert poll_due(cron(), NOW)
    assert not poll_due(cron({ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"}), NOW)
    assert poll_due(cron({ann.ANN_NEXT_CRON_TIME: "2026-11-21T06:00:00Z"}), NOW)
    assert not poll_due(cron(schedule=""), NOW)


def test_first_poll_creates_the_import_and_the_datasource() -> None:
    result = plan(Observed(cron(), NOW, poll=PollOutcome(A)))
    assert result.annotations == {ann.ANN_SOURCE_DESIRED_DIGEST: A, ann.ANN_LAST_CRON_TIME: "2026-11-21T06:00:00Z",
                                  ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"}
    created = [a.body for a in result.actions if isinstance(a, Create)]
    assert [(b["kind"], b["metadata"]["name"]) for b in created] == [("DataSource", "fedora"), ("DataVolume", FIRST)]
    assert created[1]["spec"]["source"]["registry"]["url"] == f"docker://r.example/fedora@{A}"
    assert result.status["currentImports"] == [{"DataVolumeName": FIRST, "Digest": A}]
    assert reasons(result.status) == {"Progressing": ("False", "NoImport"), "UpToDate": ("False", "Outdated")}
    assert result.requeue_after == 6 * 3600 + 1


def test_progress_follows_the_datavolume_phase() -> None:
    base = cron({ann.ANN_SOURCE_DESIRED_DIGEST: A, ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"}, importing())
    for phase, progressing in [("ImportScheduled", ("False", "ImportScheduled")),
                               ("ImportInProgress", ("True", "ImportProgressing")),
                               ("Pending", ("False", "Pending"))]:
        status = plan(Observed(base, NOW, dv=dv(FIRST, phase), data_source=ours())).status
        assert reasons(status) == {"Progressing": progressing, "UpToDate": ("False", "ImportProgressing")}


def test_success_points_the_datasource_and_is_up_to_date() -> None:
    base = cron({ann.ANN_SOURCE_DESIRED_DIGEST: A, ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"}, importing())
    result = plan(Observed(base, NOW, dv=dv(FIRST, "Succeeded"), pvc=pvc(FIRST), data_source=ours()))
    assert result.status["lastImportedPVC"] == {"namespace": "ns", "name": FIRST}
    assert result.status["lastImportTimestamp"] == "2026-11-21T06:00:00Z"
    assert reasons(result.status) == {"Progressing": ("False", "NoImport"), "UpToDate": ("True", "UpToDate")}
    patches = [a for a in result.actions if isinstance(a, Patch) and a.kind == "DataSource"]
    assert patches[0].patch["spec"]["source"]["pvc"] == {"namespace": "ns", "name": FIRST}
    assert {e.reason for e in result.events} == {"ImportSucceeded", "DataSourceUpdated"}


def test_a_new_digest_waits_for_the_running_import() -> None:
    base = cron({ann.ANN_SOURCE_DESIRED_DIGEST: B, ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"}, importing())
    result = plan(Observed(base, NOW, dv=dv(FIRST, "ImportInProgress"), data_source=ours()))
    assert not [a for a in result.actions if isinstance(a, Create)]
    assert reasons(result.status)["UpToDate"] == ("False", "Outdated")


def test_a_failed_import_is_replaced_and_the_datasource_stays() -> None:
    last = {"lastImportedPVC": {"namespace": "ns", "name": "fedora-000000000000"}}
    base = cron({ann.ANN_SOURCE_DESIRED_DIGEST: B, ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"},
                {**importing(), **last})
    data_source = ours()
    data_source["spec"]["source"] = {"pvc": {"namespace": "ns", "name": "fedora-000000000000"}}
    result = plan(Observed(base, NOW, dv=dv(FIRST, "ImportInProgress", ("ImagePullFailed", "no such tag")),
                           data_source=data_source))
    assert Delete("cdi.kubevirt.io/v1beta1", "DataVolume", FIRST, unlabel=True) in result.actions
    assert [a.body["metadata"]["name"] for a in result.actions if isinstance(a, Create)] == [SECOND]
    assert not [a for a in result.actions if isinstance(a, Patch) and a.kind == "DataSource"]


def test_a_failed_poll_retries_sooner_and_says_why() -> None:
    result = plan(Observed(cron(), NOW, poll=PollOutcome(None, "ImagePullFailed", "manifest unknown")))
    assert result.annotations[ann.ANN_NEXT_CRON_TIME] == "2026-11-21T06:00:30Z"
    assert [(e.type, e.reason) for e in result.events if e.type == "Warning"] == [("Warning", "ImagePullFailed")]
    assert reasons(result.status)["UpToDate"] == ("False", "NoDigest")


def test_an_existing_claim_of_the_next_name_is_adopted() -> None:
    base = cron({ann.ANN_SOURCE_DESIRED_DIGEST: A, ann.ANN_NEXT_CRON_TIME: "2026-11-21T12:00:00Z"})
    result = plan(Observed(base, NOW, data_source=ours(), adoptable=pvc(FIRST)))
    assert not [a for a in result.actions if isinstance(a, Create)]
    assert result.status["currentImports"] == [{"DataVolumeName": FIRST, "Digest": A}]


def test_garbage_keeps_the_newest_and_never_the_protected() -> None:
    claims = [pvc(f"fedora-{i}", f"2026-11-2{i}T00:00:00.000000Z") for i in range(1, 6)]
    actions, events = garbage(claims, [], 2, {"fedora-1"})
    assert [a.name for a in actions] == ["fedora-3", "fedora-2"]
    assert len(events) == 2
    assert garbage(claims, [], 5, set()) == ([], [])


def test_which_imports_count_as_failed() -> None:
    from cdi.controllers.dataimportcron.plan import _erroneous

    assert _erroneous(dv(FIRST, "ImportInProgress", ("InvalidImage", "no disk in the image")))
    assert _erroneous(dv(FIRST, "ImportInProgress", ("Error", "exit 1")))
    assert _erroneous(dv(FIRST, "Failed"))
    assert not _erroneous(dv(FIRST, "ImportScheduled", ("Pending", "")))
    assert not _erroneous(dv(FIRST, "ImportInProgress", ("ContainerCreating", "")))
    assert not _erroneous(dv(FIRST, "Succeeded", ("Completed", "")))
