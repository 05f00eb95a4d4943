"""`cdi get`'s columns per kind, as tables of object -> cells with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cdi.cli.columns import columns_for, header, row, table_rows
from cdi.cli.kubernetes_columns import access_modes
from cdi.cluster.kinds import resolve
from cdi.cluster.protocol import Object

NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)
FIVE_SECONDS_AGO = "2024-05-10T11:59:55Z"
THREE_MINUTES_AGO = "2024-05-10T11:56:58Z"
TWO_DAYS_AGO = "2024-05-08T12:00:00Z"


def meta(name: str, namespace: str | None = "default", created: str = FIVE_SECONDS_AGO, **extra: Any) -> Object:
    found: Object = {"name": name, "creationTimestamp": created, **extra}
    if namespace:
        found["namespace"] = namespace
    return found


def cells(word: str, obj: Object, *, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    columns = columns_for(resolve(word), wide=wide, all_namespaces=all_namespaces)
    return row(columns, obj, NOW)


def headers(word: str, *, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    return header(columns_for(resolve(word), wide=wide, all_namespaces=all_namespaces))


@pytest.mark.parametrize(("word", "wide", "expected"), [
    ("dv", False, ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]),
    ("pvc", False, ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"]),
    ("pvc", True, ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE", "VOLUMEMODE"]),
    ("pv", False, ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
                   "REASON", "AGE"]),
    ("pod", False, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
    ("pods", True, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                    "READINESS GATES"]),
    ("sc", False, ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]),
    ("ev", False, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]),
    ("das", False, ["NAME", "AGE"]),
    ("storageprofiles", False, ["NAME", "AGE"]),
    ("dic", False, ["NAME", "FORMAT"]),
    ("cdi", False, ["NAME", "AGE", "PHASE"]),
    ("configmap", False, ["NAME", "AGE"]),
])
def test_headers(word: str, wide: bool, expected: list[str]) -> None:
    assert headers(word, wide=wide) == expected


def test_all_namespaces_adds_namespace_only_to_namespaced_kinds() -> None:
    assert headers("dv", all_namespaces=True)[:2] == ["NAMESPACE", "NAME"]
    assert headers("sc", all_namespaces=True)[0] == "NAME"
    assert headers("events", all_namespaces=True)[:2] == ["NAMESPACE", "LAST SEEN"]


@pytest.mark.parametrize(("status", "expected"), [
    ({}, ["fedora", "", "", "", "5s"]),
    ({"phase": "ImportInProgress", "progress": "45.20%", "restartCount": 0},
     ["fedora", "ImportInProgress", "45.20%", "0", "5s"]),
    ({"phase": "Succeeded", "progress": "100.0%", "restartCount": 2}, ["fedora", "Succeeded", "100.0%", "2", "5s"]),
])
def test_datavolume_printer_columns(status: Object, expected: list[str]) -> None:
    dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": meta("fedora"), "status": status}
    assert cells("dv", dv) == expected


def test_datavolume_age_in_minutes_and_namespace_column() -> None:
    dv = {"metadata": meta("fedora", namespace="vms", created=THREE_MINUTES_AGO)}
    assert cells("dv", dv, all_namespaces=True) == ["vms", "fedora", "", "", "", "3m2s"]


@pytest.mark.parametrize(("modes", "expected"), [
    (["ReadWriteOnce"], "RWO"),
    (["ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce"], "RWO,ROX,RWX"),
    (["ReadWriteOncePod", "ReadWriteOnce", "ReadWriteOnce"], "RWO,RWOP"),
    ([], ""),
    (None, ""),
])
def test_access_modes(modes: Any, expected: str) -> None:
    assert access_modes(modes) == expected


BOUND_PVC = {
    "metadata": meta("fedora", created=TWO_DAYS_AGO),
    "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-1", "storageClassName": "local",
             "volumeMode": "Block", "resources": {"requests": {"storage": "10Gi"}}},
    "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadWriteMany"], "capacity": {"storage": "11Gi"}},
}
PENDING_PVC = {"metadata": meta("scratch"), "spec": {"resources": {"requests": {"storage": "1Gi"}}},
               "status": {"phase": "Pending"}}
TERMINATING_PVC = {"metadata": meta("old", deletionTimestamp=FIVE_SECONDS_AGO),
                   "spec": {"storageClassName": "local"}, "status": {"phase": "Bound"}}


@pytest.mark.parametrize(("pvc", "wide", "expected"), [
    (BOUND_PVC, False, ["fedora", "Bound", "pv-1", "11Gi", "RWO,RWX", "local", "2d"]),
    (BOUND_PVC, True, ["fedora", "Bound", "pv-1", "11Gi", "RWO,RWX", "local", "2d", "Block"]),
    (PENDING_PVC, True, ["scratch", "Pending", "", "", "", "", "5s", "<unset>"]),
    (TERMINATING_PVC, False, ["old", "Terminating", "", "", "", "local", "5s"]),
])
def test_pvc_columns(pvc: Object, wide: bool, expected: list[str]) -> None:
    assert cells("pvc", pvc, wide=wide) == expected


def test_pv_columns() -> None:
    pv = {"metadata": meta("pv-1", namespace=None),
          "spec": {"capacity": {"storage": "11Gi"}, "accessModes": ["ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local",
                   "claimRef": {"namespace": "default", "name": "fedora"}},
          "status": {"phase": "Bound"}}
    assert cells("pv", pv) == ["pv-1", "11Gi", "RWO", "Delete", "Bound", "default/fedora", "local", "", "5s"]
    released = {"metadata": meta("pv-2", namespace=None), "spec": {"capacity": {"storage": "1Gi"}},
                "status": {"phase": "Failed", "reason": "Recycler"}}
    assert cells("pv", released) == ["pv-2", "1Gi", "", "", "Failed", "", "", "Recycler", "5s"]


def _container(name: str, *, ready: bool = False, restarts: int = 0, **state: Any) -> Object:
    return {"name": name, "ready": ready, "restartCount": restarts, "state": state}


@pytest.mark.parametrize(("status", "expected"), [
    ({"phase": "Pending"}, ["0/2", "Pending", "0"]),
    ({"phase": "Pending", "containerStatuses": [
        _container("importer", waiting={"reason": "ContainerCreating"}),
        _container("sidecar", waiting={"reason": "ContainerCreating"})]}, ["0/2", "ContainerCreating", "0"]),
    ({"phase": "Running", "containerStatuses": [
        _container("importer", ready=True, running={"startedAt": TWO_DAYS_AGO}),
        _container("sidecar", ready=True, running={})]}, ["2/2", "Running", "0"]),
    ({"phase": "Running", "containerStatuses": [
        {**_container("importer", restarts=3, waiting={"reason": "CrashLoopBackOff"}),
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": THREE_MINUTES_AGO}}},
        _container("sidecar", ready=True, running={})]}, ["1/2", "CrashLoopBackOff", "3 (3m2s ago)"]),
    ({"phase": "Succeeded", "containerStatuses": [
        _container("importer", terminated={"exitCode": 0, "reason": "Completed"}),
        _container("sidecar", terminated={"exitCode": 0, "reason": "Completed"})]}, ["0/2", "Completed", "0"]),
    ({"phase": "Failed", "containerStatuses": [
        _container("importer", terminated={"exitCode": 2}),
        _container("sidecar", terminated={"exitCode": 0, "reason": "Completed"})]}, ["0/2", "ExitCode:2", "0"]),
    ({"phase": "Running", "containerStatuses": [
        _container("importer", ready=True, running={}),
        _container("sidecar", terminated={"exitCode": 0, "reason": "Completed"})]}, ["1/2", "Running", "0"]),
    ({"phase": "Pending", "initContainerStatuses": [
        _container("init", waiting={"reason": "PodInitializing"})]}, ["0/2", "Init:0/1", "0"]),
    ({"phase": "Pending", "initContainerStatuses": [
        _container("init", terminated={"exitCode": 1, "reason": "Error"})]}, ["0/2", "Init:Error", "0"]),
])
def test_pod_ready_status_and_restarts(status: Object, expected: list[str]) -> None:
    pod = {"metadata": meta("importer-fedora"), "status": status,
           "spec": {"containers": [{"name": "importer"}, {"name": "sidecar"}], "initContainers": [{"name": "init"}]}}
    assert cells("pod", pod)[1:4] == expected


def test_pod_wide_and_terminating() -> None:
    pod = {"metadata": meta("importer-fedora", deletionTimestamp=FIVE_SECONDS_AGO),
           "spec": {"containers": [{"name": "importer"}], "nodeName": "localhost"},
           "status": {"phase": "Running", "podIP": "127.0.0.1"}}
    assert cells("pod", pod, wide=True) == ["importer-fedora", "0/1", "Terminating", "0", "5s", "127.0.0.1",
                                            "localhost", "<none>", "<none>"]


@pytest.mark.parametrize(("sc", "expected"), [
    ({"metadata": meta("local", namespace=None,
                       annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
      "provisioner": "cdi.kubevirt.io/hostpath", "volumeBindingMode": "WaitForFirstConsumer",
      "allowVolumeExpansion": True},
     ["local (default)", "cdi.kubevirt.io/hostpath", "Delete", "WaitForFirstConsumer", "true", "5s"]),
    ({"metadata": meta("slow", namespace=None), "provisioner": "example.com/nfs", "reclaimPolicy": "Retain"},
     ["slow", "example.com/nfs", "Retain", "Immediate", "false", "5s"]),
])
def test_storage_class_columns(sc: Object, expected: list[str]) -> None:
    assert cells("sc", sc) == expected


def test_event_columns() -> None:
    event = {"metadata": meta("fedora.17a2b3"), "type": "Normal", "reason": "ImportSucceeded",
             "involvedObject": {"kind": "DataVolume", "name": "fedora", "fieldPath": ""},
             "source": {"component": "datavolume-controller"}, "message": " Import Successful \n",
             "firstTimestamp": TWO_DAYS_AGO, "lastTimestamp": THREE_MINUTES_AGO, "count": 4}
    assert cells("events", event) == ["3m2s", "Normal", "ImportSucceeded", "datavolume/fedora", "Import Successful"]
    assert cells("events", event, wide=True) == ["3m2s", "Normal", "ImportSucceeded", "datavolume/fedora", "",
                                                 "datavolume-controller", "Import Successful", "2d", "4",
                                                 "fedora.17a2b3"]


def test_table_rows_starts_with_the_header() -> None:
    columns = columns_for(resolve("das"))
    rows = table_rows(columns, [{"metadata": meta("golden")}, {"metadata": {"name": "no-time"}}], NOW)
    assert rows == [["NAME", "AGE"], ["golden", "5s"], ["no-time", "<unknown>"]]
