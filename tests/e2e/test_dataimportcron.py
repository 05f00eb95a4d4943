"""DataImportCrons end to end through a real `cdi serve` and the CLI: a cron on a local docker-registry
imports at once, survives a restart, re-imports each newly pushed digest, switches its DataSource only
to succeeded imports and keeps `importsToKeep`; HTTP (nginx) and S3 (moto) crons re-import changed files;
the seeds' examples (chapter 8.3.2.x) as written, with the image on the local registry — the
custom boot source, the snapshot source format, and a node-pull cron refused with a condition.

Schedules are short (`@every 2s`, which robfig/cron and our admission accept) so that nothing waits for
a wall-clock time; schedule arithmetic itself is tested with an injected clock in tests/dataimportcron.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.manifests import FROM_SEED_YAML
from tests.registry import images as oci
from tests.support.controlplane import ControlPlane
from tests.support.nginx import NginxServer
from tests.support.registry import RegistryServer
from tests.support.s3 import MotoS3
from tests.support.tls import TestPKI

pytestmark = pytest.mark.slow
MiB = 1 << 20


def disk(marker: bytes) -> bytes:
    return marker.ljust(MiB, b"\0")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("cron-e2e-registry"), tmp_path_factory.mktemp("cron-e2e-work")) as plain:
        yield plain


def push(registry: RegistryServer, repository: str, marker: bytes) -> str:
    layer = oci.layer({"disk/disk.img": disk(marker)})
    return oci.Pusher(registry.base_url).image(repository, "latest", oci.image([layer]))


def insecure(registry: RegistryServer) -> str:
    return yaml.safe_dump({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig", "metadata": {"name": "config"},
                           "spec": {"insecureRegistries": [registry.host]}})


def cron(name: str, source: dict[str, Any], **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
                           "metadata": {"name": name, "namespace": "default"},
                           "spec": {"schedule": "@every 2s", "managedDataSource": name.removesuffix("-cron"), **spec,
                                    "template": {"spec": {"source": source, "storage": {
                                        "resources": {"requests": {"storage": "64Mi"}}}}}}})


def imported(plane: ControlPlane, cron_name: str, name: str) -> dict[str, Any] | None:
    found = plane.get("dataimportcron", cron_name)
    last = ((found or {}).get("status") or {}).get("lastImportedPVC") or {}
    return found if last.get("name") == name else None


def head_bytes(plane: ControlPlane, claim: str) -> bytes:
    with (plane.volume_path(claim) / "disk.img").open("rb") as image:
        return image.read(16)


def labelled_dvs(plane: ControlPlane, cron_name: str) -> list[str]:
    listed = json.loads(plane.cdi("get", "dv", "-o", "json").stdout).get("items") or []
    return sorted(dv["metadata"]["name"] for dv in listed
                  if (dv["metadata"].get("labels") or {}).get("cdi.kubevirt.io/dataImportCron") == cron_name)


def test_registry_cron_imports_reimports_and_keeps_imports(control_plane: ControlPlane,
                                                           registry: RegistryServer) -> None:
    digests = [push(registry, "disks/fedora", b"first-image")]
    control_plane.apply(insecure(registry) + "---\n" + cron(
        "fedora-cron", {"registry": {"url": f"docker://{registry.host}/disks/fedora:latest"}}, importsToKeep=2))
    names = ["fedora-" + digests[0][7:19]]
    found = control_plane.wait_for(lambda: imported(control_plane, "fedora-cron", names[0]), "the first import")
    assert {c["type"]: c["reason"] for c in found["status"]["conditions"]}["UpToDate"] == "UpToDate"
    source = control_plane.get("datasource", "fedora")
    assert source is not None and source["spec"]["source"]["pvc"] == {"namespace": "default", "name": names[0]}
    assert head_bytes(control_plane, names[0]).startswith(b"first-image")

    control_plane.stop()  # a restart between two steps: the state is all in the store
    control_plane.start()
    # A broken image (no disk in it): its import fails and the DataSource stays on the last good one.
    broken_layer = oci.layer({"disk/readme.txt": b"not a disk"})
    broken = "fedora-" + oci.Pusher(registry.base_url).image("disks/fedora", "latest",
                                                               oci.image([broken_layer]))[7:19]

    def failed() -> bool:
        found = control_plane.get("dv", broken) or {}
        running = next((c for c in (found.get("status") or {}).get("conditions") or [] if c["type"] == "Running"), {})
        return running.get("status") == "False" and running.get("reason") not in (None, "", "Pending", "Completed")

    control_plane.wait_for(failed, "the broken image's import to fail")
    source = control_plane.get("datasource", "fedora")
    assert source is not None and source["spec"]["source"]["pvc"]["name"] == names[0]
    for marker in (b"second-image", b"third-image"):
        digests.append(push(registry, "disks/fedora", marker))
        names.append("fedora-" + digests[-1][7:19])
        control_plane.wait_for(lambda: imported(control_plane, "fedora-cron", names[-1]), f"the import of {marker!r}")
        source = control_plane.get("datasource", "fedora")
        assert source is not None and source["spec"]["source"]["pvc"]["name"] == names[-1]
        assert head_bytes(control_plane, names[-1]).startswith(marker)
    control_plane.wait_for(lambda: labelled_dvs(control_plane, "fedora-cron") == sorted(names[1:]),
                           "garbage collection down to importsToKeep (2)")
    ready = control_plane.wait_for(lambda: next((c for c in ((control_plane.get("datasource", "fedora") or {})
                                                             .get("status") or {}).get("conditions") or []
                                                 if c["type"] == "Ready" and c["status"] == "True"), None),
                                   "the DataSource to be Ready")
    assert ready["reason"] == "Ready"
    # A VM's disk from the DataSource (`sourceRef`) gets the newest image's bytes.
    control_plane.apply(yaml.safe_dump({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "vm-disk", "namespace": "default"},
        "spec": {"sourceRef": {"kind": "DataSource", "name": "fedora"},
                 "storage": {"resources": {"requests": {"storage": "64Mi"}}}}}))
    control_plane.wait_for(lambda: ((control_plane.get("dv", "vm-disk") or {}).get("status") or {}).get("phase")
                           == "Succeeded", "the sourceRef DataVolume")
    assert head_bytes(control_plane, "vm-disk").startswith(b"third-image")
    events = control_plane.cdi("get", "events", "-o", "json").stdout
    assert control_plane.get("dv", broken) is None  # replaced by the next digest's import
    for reason in ("ImportCreated", "ImportSucceeded", "DataSourceUpdated", "GarbageCollected", "ImportFailed"):
        assert reason in events


def last_imported(plane: ControlPlane, cron_name: str) -> str | None:
    found = plane.get("dataimportcron", cron_name) or {}
    return ((found.get("status") or {}).get("lastImportedPVC") or {}).get("name")


def last_poll(plane: ControlPlane, cron_name: str) -> str:
    found = plane.get("dataimportcron", cron_name) or {}
    return str((found.get("metadata") or {}).get("annotations", {}).get("cdi.kubevirt.io/storage.import.lastCronTime"))


def test_http_and_s3_crons_reimport_only_changed_images(control_plane: ControlPlane, tmp_path: Path,
                                                        pki: TestPKI) -> None:
    """Beyond upstream: an HTTP cron (ETag/Last-Modified behind nginx) and an S3 cron (moto) import at
    once, poll again without importing while nothing changed, and import again once the file changes."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    image = docroot / "disk.img"
    image.write_bytes(disk(b"http-one"))
    (tmp_path / "s3.img").write_bytes(disk(b"s3-one"))
    with NginxServer(docroot, tmp_path / "nginx", pki) as nginx, MotoS3() as s3:
        s3.upload("images", "disk.img", tmp_path / "s3.img")
        keys = {"accessKeyId": base64.b64encode(b"test-access").decode(),
                "secretKey": base64.b64encode(b"test-secret").decode()}
        control_plane.apply("---\n".join([
            yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-keys", "namespace": "default"},
                            "data": keys}),
            cron("web-cron", {"http": {"url": nginx.url("disk.img")}}),
            cron("bucket-cron", {"s3": {"url": s3.url("images", "disk.img"), "secretRef": "s3-keys"}})]))
        crons = ("web-cron", "bucket-cron")
        first = control_plane.wait_for(lambda: all(last_imported(control_plane, c) for c in crons) and
                                       {c: last_imported(control_plane, c) for c in crons}, "the first imports")
        assert head_bytes(control_plane, first["web-cron"]).startswith(b"http-one")
        assert head_bytes(control_plane, first["bucket-cron"]).startswith(b"s3-one")
        polled = {c: last_poll(control_plane, c) for c in crons}
        control_plane.wait_for(lambda: all(last_poll(control_plane, c) != polled[c] for c in crons), "more polls")
        for name in crons:  # nothing changed: no new import
            assert labelled_dvs(control_plane, name) == [first[name]]
        image.write_bytes(disk(b"http-two"))
        os.utime(image, (image.stat().st_atime, image.stat().st_mtime + 5))
        (tmp_path / "s3.img").write_bytes(disk(b"s3-two"))
        s3.upload("images", "disk.img", tmp_path / "s3.img")
        second = control_plane.wait_for(
            lambda: all(last_imported(control_plane, c) != first[c] for c in crons) and
            {c: last_imported(control_plane, c) for c in crons}, "the changed images to be imported")
        assert head_bytes(control_plane, second["web-cron"]).startswith(b"http-two")
        assert head_bytes(control_plane, second["bucket-cron"]).startswith(b"s3-two")


def seed_cron(registry: RegistryServer) -> str:
    """8.3.2.2's custom boot source as written, its image moved to the local registry."""
    push(registry, "containerdisks/centos", b"centos-7")
    return FROM_SEED_YAML["cron-centos7"].replace("docker://quay.io/containerdisks/centos:7-2009",
                                                  f"docker://{registry.host}/containerdisks/centos:latest")


def conditions(plane: ControlPlane, name: str) -> dict[str, dict[str, Any]]:
    found = plane.get("dataimportcron", name) or {}
    return {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}


def test_seed_custom_boot_source_and_node_pull(control_plane: ControlPlane, registry: RegistryServer) -> None:
    """8.3.2.2's cron imports at once into the default class and its DataSource `centos7` follows; 8.3.4's
    `user-defined-dic` (pullMethod: node) is refused with a condition that says why."""
    node = cron("user-defined-dic", {"registry": {"pullMethod": "node",
                                                   "url": "docker://quay.io/containerdisks/centos-stream:8"}},
                managedDataSource="user-defined-centos-stream8", garbageCollect="Outdated", schedule="55 8/12 * * *")
    control_plane.apply("---\n".join([insecure(registry), seed_cron(registry), node]))
    control_plane.wait_for(lambda: conditions(control_plane, "centos7-image-cron").get("UpToDate", {})
                           .get("status") == "True", "the seed cron to be up to date")
    found = control_plane.get("dataimportcron", "centos7-image-cron")
    assert found is not None
    name = found["status"]["lastImportedPVC"]["name"]
    assert name.startswith("centos7-") and len(name) == len("centos7-") + 12
    source = control_plane.get("datasource", "centos7")
    assert source is not None and source["spec"]["source"]["pvc"]["name"] == name
    dv = control_plane.get("dv", name)
    assert dv is not None and dv["metadata"]["labels"]["instancetype.kubevirt.io/default-preference"] == "centos.7"
    assert head_bytes(control_plane, name).startswith(b"centos-7")
    refused = control_plane.wait_for(lambda: conditions(control_plane, "user-defined-dic").get("UpToDate", {})
                                     .get("reason") == "NotSupported" and conditions(control_plane, "user-defined-dic"),
                                     "the node-pull cron to be refused")
    assert "pullMethod: node" in refused["UpToDate"]["message"]


def test_seed_snapshot_source_format(control_plane: ControlPlane, registry: RegistryServer) -> None:
    """8.3.2.3: with the StorageProfile's `dataImportCronSourceFormat: snapshot`, the cron keeps a ready
    VolumeSnapshot, drops the imported claim, and the DataSource points at the snapshot."""
    profile = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile", "metadata": {"name": "local"},
               "spec": {"dataImportCronSourceFormat": "snapshot"}}
    control_plane.apply("---\n".join([insecure(registry), yaml.safe_dump(profile), seed_cron(registry)]))
    control_plane.wait_for(lambda: conditions(control_plane, "centos7-image-cron").get("UpToDate", {})
                           .get("status") == "True", "the cron to be up to date (its snapshot ready)")
    found = control_plane.get("dataimportcron", "centos7-image-cron")
    assert found is not None and found["status"]["sourceFormat"] == "snapshot"
    name = found["status"]["lastImportedPVC"]["name"]
    source = control_plane.get("datasource", "centos7")
    assert source is not None and source["spec"]["source"] == {"snapshot": {"namespace": "default", "name": name}}
    control_plane.wait_for(lambda: control_plane.get("dv", name) is None, "the imported claim to go")
    stored = control_plane.get("volumesnapshot", name)
    assert stored is not None and stored["status"]["readyToUse"] is True
    assert stored["metadata"]["labels"]["instancetype.kubevirt.io/default-preference"] == "centos.7"
