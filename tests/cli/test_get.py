"""`cdi get`: tables, wide, yaml/json/name output, namespaces, selectors, ages, core kinds and --watch."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from cdi.cli.get import Printer
from cdi.cluster.kinds import resolve
from cdi.cluster.protocol import WatchEvent
from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import Run, RunAsync, seed
from tests.cli.manifests import datavolume

LONG_AGO = datetime.now(UTC) - timedelta(days=5, hours=3, minutes=30)


def test_table_wide_and_ages(cdi: Run, home: Path) -> None:
    seed(home, datavolume("fedora", labels={"app": "vm"}), datavolume("centos"), clock=lambda: LONG_AGO)
    result = cdi("get", "dv")
    assert (result.code, result.err) == (0, "")
    assert result.out == ("NAME     PHASE   PROGRESS   RESTARTS   AGE\n"
                          "centos                                 5d3h\n"
                          "fedora                                 5d3h\n")
    # ours: -o wide adds what a running transfer is doing (empty here: nothing runs)
    assert cdi("get", "datavolumes", "-o", "wide").out == (
        "NAME     PHASE   PROGRESS   RESTARTS   AGE    BYTES   RATE   ETA\n"
        "centos                                 5d3h\n"
        "fedora                                 5d3h\n")
    assert cdi("get", "dv", "--no-headers").out.splitlines()[0].startswith("centos")


def test_named_objects_and_missing_ones(cdi: Run, home: Path) -> None:
    seed(home, datavolume("fedora"), datavolume("centos"))
    result = cdi("get", "dv", "fedora", "ghost")
    assert result.code == 1
    assert result.out.splitlines()[1].startswith("fedora ")
    assert result.err == 'error: datavolumes.cdi.kubevirt.io "ghost" not found\n'
    assert cdi("get", "dv/centos", "-o", "name").out == "datavolume.cdi.kubevirt.io/centos\n"


def test_yaml_json_and_name(cdi: Run, home: Path) -> None:
    seed(home, datavolume("fedora"), datavolume("centos"))
    single = yaml.safe_load(cdi("get", "dv", "fedora", "-o", "yaml").out)
    assert single["kind"] == "DataVolume" and single["metadata"]["name"] == "fedora"
    assert single["spec"]["storage"]["resources"]["requests"]["storage"] == "1Gi"
    listed = json.loads(cdi("get", "dv", "-o", "json").out)
    assert listed["kind"] == "List" and [o["metadata"]["name"] for o in listed["items"]] == ["centos", "fedora"]
    assert cdi("get", "dv", "-o", "name").out == ("datavolume.cdi.kubevirt.io/centos\n"
                                                  "datavolume.cdi.kubevirt.io/fedora\n")


def test_namespaces_and_all_namespaces(cdi: Run, home: Path) -> None:
    seed(home, datavolume("a", namespace="default"), datavolume("b", namespace="vms"))
    assert cdi("get", "dv", "-o", "name").out == "datavolume.cdi.kubevirt.io/a\n"
    assert cdi("get", "dv", "-n", "vms", "-o", "name").out == "datavolume.cdi.kubevirt.io/b\n"
    every = cdi("get", "dv", "-A").out.splitlines()
    assert every[0].split() == ["NAMESPACE", "NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]
    assert [line.split()[:2] for line in every[1:]] == [["default", "a"], ["vms", "b"]]
    empty = cdi("get", "dv", "-n", "nowhere")
    assert (empty.code, empty.out, empty.err) == (0, "", "No resources found in nowhere namespace.\n")
    refused = cdi("get", "dv", "a", "-A")
    assert (refused.code, refused.err) == (1, "error: a resource cannot be retrieved by name across all namespaces\n")


def test_label_selectors(cdi: Run, home: Path) -> None:
    seed(home, datavolume("web-1", labels={"app": "web", "tier": "front"}),
         datavolume("web-2", labels={"app": "web", "tier": "back"}), datavolume("db", labels={"app": "db"}))

    def names(selector: str) -> list[str]:
        return [line.rsplit("/", 1)[1] for line in cdi("get", "dv", "-l", selector, "-o", "name").out.splitlines()]

    assert names("app=web") == ["web-1", "web-2"]
    assert names("app=web,tier!=front") == ["web-2"]
    assert names("app in (db, cache)") == ["db"]
    assert names("!tier") == ["db"]
    bad = cdi("get", "dv", "-l", "app in (web")
    assert (bad.code, bad.error_lines) == (1, ['error: unable to parse requirement: "app in (web" in label selector '
                                               '"app in (web"'])


def test_status_columns_and_core_kinds(cdi: Run, home: Path) -> None:
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
          "provisioner": "cdi.kubevirt.io/hostpath", "volumeBindingMode": "WaitForFirstConsumer"}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "fedora", "namespace": "default"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                    "storageClassName": "local"}}
    seed(home, sc, pvc, clock=lambda: LONG_AGO)
    assert cdi("get", "sc").out == (
        "NAME              PROVISIONER                RECLAIMPOLICY   VOLUMEBINDINGMODE      ALLOWVOLUMEEXPANSION   AGE\n"
        "local (default)   cdi.kubevirt.io/hostpath   Delete          WaitForFirstConsumer   false                  5d3h\n")
    assert cdi("get", "pvc", "-o", "wide").out.splitlines()[1].split() == ["fedora", "local", "5d3h", "<unset>"]


async def test_status_updates_show_in_columns(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    await cluster.patch_status("cdi.kubevirt.io/v1beta1", "DataVolume", "fedora",
                               {"status": {"phase": "ImportInProgress", "progress": "42.00%", "restartCount": 1}},
                               "default")
    result = await cdi_in_thread("get", "dv")
    assert result.out.splitlines()[1].split()[:4] == ["fedora", "ImportInProgress", "42.00%", "1"]


async def test_watch_prints_rows_as_objects_change(cluster: EmbeddedCluster, cdi_in_thread: RunAsync) -> None:
    await cluster.create(datavolume("fedora"))
    watching = asyncio.create_task(cdi_in_thread("get", "dv", "-w", "--timeout", "1s"))
    await asyncio.sleep(0.4)
    for phase in ("ImportScheduled", "Succeeded"):
        await cluster.patch_status("cdi.kubevirt.io/v1beta1", "DataVolume", "fedora", {"status": {"phase": phase}},
                                   "default")
    await cluster.create(datavolume("other", namespace="elsewhere"))
    await cluster.delete("cdi.kubevirt.io/v1beta1", "DataVolume", "fedora", "default")
    result = await watching
    assert result.code == 0
    rows = [line.split()[:2] for line in result.out.splitlines()]
    assert rows == [["NAME", "PHASE"], ["fedora", "0s"], ["fedora", "ImportScheduled"], ["fedora", "Succeeded"],
                    ["fedora", "Succeeded"]]
    lines = result.out.splitlines()
    column = lines[0].index("PHASE")  # later rows stay aligned with the header
    assert [line[column:].split()[0] for line in lines[2:]] == ["ImportScheduled", "Succeeded", "Succeeded"]


def test_a_store_that_is_not_a_database(cdi: Run, home: Path) -> None:
    (home / "store.db").write_bytes(b"this is not a database" * 100)
    result = cdi("get", "dv")
    assert result.code == 1
    assert result.err == f"error: cannot open the embedded store {home / 'store.db'}: file is not a database\n"


def test_printer_streams_documents_and_keeps_table_widths() -> None:
    now = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)
    fedora = {**datavolume("fedora"), "status": {"phase": "Succeeded"}}
    fedora["metadata"]["creationTimestamp"] = "2024-05-10T11:59:55Z"
    table = Printer(resolve("dv"), None, clock=lambda: now)
    assert table.listing([fedora]) == ("NAME     PHASE       PROGRESS   RESTARTS   AGE\n"
                                       "fedora   Succeeded                         5s\n")
    assert table.change(WatchEvent("MODIFIED", {"metadata": {"name": "a", "creationTimestamp": "2024-05-10T11:00:00Z"},
                                                 "status": {"phase": "Pending"}})) == \
        "a        Pending                           60m\n"
    documents = Printer(resolve("dv"), "yaml", clock=lambda: now)
    streamed = documents.listing([fedora, fedora], streaming=True)
    assert streamed.count("---\n") == 2 and "kind: List" not in streamed
    assert Printer(resolve("dv"), "name").change(WatchEvent("DELETED", fedora)) == "datavolume.cdi.kubevirt.io/fedora\n"
