"""kubectl habits the seeds' steps rely on: `-o jsonpath=`, several kinds in one `get`, `create configmap`
and `create secret generic`, flags between arguments, one-line usage errors, and saying so when no
control plane serves the state directory (or there is no store at all)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import yaml

from cdi.cli.state import store_path
from cdi.embedded import EmbeddedCluster
from cdi.runtime.lock import ProcessLock
from tests.cli.conftest import Run, seed
from tests.cli.manifests import datavolume

OVERHEAD = {"global": "0.055", "storageClass": {"local": "0.1"}}


def seed_cdiconfig(home: Path) -> None:
    async def write() -> None:
        async with EmbeddedCluster(store_path(home)) as cluster:
            await cluster.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig",
                                  "metadata": {"name": "config"}, "spec": {},
                                  "status": {"filesystemOverhead": OVERHEAD, "uploadProxyURL": "https://127.0.0.1:31443"}})

    asyncio.run(write())


def test_the_seeds_filesystem_overhead_check(cdi: Run, home: Path) -> None:
    seed_cdiconfig(home)
    listed = cdi("get", "cdiconfig", "-o", "jsonpath={.items..status.filesystemOverhead}")
    assert (listed.code, listed.out, listed.err) == (0, '{"global":"0.055","storageClass":{"local":"0.1"}}', "")
    named = cdi("get", "cdiconfig", "config", "-o=jsonpath={.status.filesystemOverhead.global}")
    assert named.out == "0.055"  # a single object by name: the object itself, not a List


def test_jsonpath_ranges_and_literals(cdi: Run, home: Path) -> None:
    seed(home, datavolume("fedora"), datavolume("centos"))
    names = cdi("get", "dv", "-o", "jsonpath={.items[*].metadata.name}")
    assert names.out == "centos fedora"
    lines = cdi("get", "dv", "-o", 'jsonpath={range .items[*]}{.metadata.name}{"\\t"}{.kind}{"\\n"}{end}')
    assert lines.out == "centos\tDataVolume\nfedora\tDataVolume\n"
    bad = cdi("get", "dv", "-o", "jsonpath={range .items[*]}")
    assert bad.code == 2 and bad.out == ""
    assert bad.err == ("error: argument -o/--output: unclosed {range} in JSONPath template '{range .items[*]}': "
                       "add {end}; see 'cdi get --help'\n")


def test_several_kinds_print_one_table_each(cdi: Run, home: Path) -> None:
    seed(home, datavolume("fedora"),
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tls-certs", "namespace": "default"}})
    result = cdi("get", "dv,cm")
    assert result.code == 0, result.err
    dv_table, cm_table = result.out.split("\n\n")
    assert [line.split()[0] for line in dv_table.splitlines()] == ["NAME", "datavolume.cdi.kubevirt.io/fedora"]
    assert [line.split()[0] for line in cm_table.splitlines()] == ["NAME", "configmap/tls-certs"]
    assert cdi("get", "dv,configmaps", "-o", "name").out == "datavolume.cdi.kubevirt.io/fedora\nconfigmap/tls-certs\n"
    both = yaml.safe_load(cdi("get", "dv/fedora", "cm/tls-certs", "-o", "yaml").out)
    assert both["kind"] == "List" and [o["kind"] for o in both["items"]] == ["DataVolume", "ConfigMap"]
    missing = cdi("get", "dv,pvc", "fedora")
    assert missing.code == 1
    assert missing.out.splitlines()[1].startswith("datavolume.cdi.kubevirt.io/fedora ")
    assert missing.err == 'error: persistentvolumeclaims "fedora" not found\n'
    assert cdi("get", "dv,pvc", "-w").err == \
        "error: you may only specify a single resource type with --watch\n"


def test_create_configmap_from_a_ca_certificate(cdi: Run, home: Path, tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "ca.pem").write_text(pem)
    (tmp_path / "blob").write_bytes(b"\xff\x00binary")
    result = cdi("create", "configmap", "tls-certs", f"--from-file={tmp_path / 'ca.pem'}", "-n", "vms",
                 "--from-file", f"raw={tmp_path / 'blob'}", "--from-literal=note=a=b")
    assert (result.code, result.out, result.err) == (0, "configmap/tls-certs created\n", "")
    stored = json.loads(cdi("get", "cm", "tls-certs", "-n", "vms", "-o", "json").out)
    assert stored["data"] == {"ca.pem": pem, "note": "a=b"}
    assert base64.b64decode(stored["binaryData"]["raw"]) == b"\xff\x00binary"
    again = cdi("create", "cm", "tls-certs", "-n", "vms", "--from-literal=x=y")
    assert again.code == 1 and again.err == 'error: configmaps "tls-certs" already exists\n'


def test_create_secret_generic_for_registry_credentials(cdi: Run, home: Path, tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "accessKeyId").write_text("AKIA")
    (tmp_path / "creds" / "secretKey").write_text("s3cret")
    result = cdi("create", "secret", "generic", "data-source-secret", f"--from-file={tmp_path / 'creds'}")
    assert (result.code, result.out) == (0, "secret/data-source-secret created\n")
    stored = yaml.safe_load(cdi("get", "secret", "data-source-secret", "-o", "yaml").out)
    assert stored["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == \
        {"accessKeyId": "AKIA", "secretKey": "s3cret"}
    typed = cdi("create", "secret", "generic", "token", "--type=kubernetes.io/basic-auth",
                "--from-literal=username=u", "--from-literal=username=v")
    assert typed.code == 1
    assert typed.err == 'error: cannot add key "username", another key by that name already exists in Secret "token"\n'
    assert cdi("create").err == "error: must specify -f FILE, or a kind: configmap, secret generic\n"


def test_flags_may_come_between_arguments(cdi: Run, home: Path) -> None:
    seed(home, datavolume("a", namespace="vms"), datavolume("b", namespace="vms"))
    assert cdi("get", "dv", "-n", "vms", "b", "-o", "name").out == "datavolume.cdi.kubevirt.io/b\n"


def test_usage_errors_are_one_line(cdi: Run) -> None:
    bad = cdi("get", "dv", "--bogus")
    assert (bad.code, bad.out, bad.err) == (2, "", "error: unrecognized arguments: --bogus; see 'cdi --help'\n")
    missing = cdi("wait", "dv/x")
    assert (missing.code, missing.err) == (2, "error: the following arguments are required: --for; "
                                              "see 'cdi wait --help'\n")


def test_warns_when_no_control_plane_serves_the_home(cdi: Run, home: Path, serve_lock: ProcessLock) -> None:
    serve_lock.release()
    seed(home, datavolume("fedora"))
    result = cdi("get", "dv", "-o", "name")
    assert (result.code, result.out) == (0, "datavolume.cdi.kubevirt.io/fedora\n")
    assert result.err == (f"warning: no control plane (cdi serve) is running for {home}; objects are stored but "
                          f"nothing will act on them until one starts\n")
    assert serve_lock.try_acquire()  # the check did not take the lock, nor keep it
    assert cdi("get", "dv", "-o", "name").err == ""


def test_reading_a_home_without_a_store_creates_none(cdi: Run, home: Path) -> None:
    store_path(home).unlink()
    for argv in (("get", "dv"), ("describe", "dv", "x"), ("wait", "dv/x", "--for=delete"), ("delete", "dv", "x")):
        result = cdi(*argv)
        assert result.code == 1, argv
        assert result.err == (f"error: there is no object store in {home}: nothing has been stored there yet (check "
                              f"CDI_HOME or --home; `cdi serve` or `cdi apply` creates it)\n"), argv
    assert not store_path(home).exists()
