"""Create, read, update and patch on the embedded store, with the API server's rules."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from cdi.cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from cdi.embedded import EmbeddedCluster
from tests.cluster.conftest import FakeClock
from tests.cluster.manifests import configmap, datavolume, storageprofile


async def test_create_sets_server_fields(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("settings", data={"a": "1"},
                                             labels={"app": "x"}))
    meta = created["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert await cluster.get("v1", "ConfigMap", "settings", "default") == created


async def test_client_sent_server_fields_are_replaced(cluster: EmbeddedCluster) -> None:
    doc = configmap("cm")
    doc["metadata"].update(uid="forged", resourceVersion="999", generation=7,
                           deletionTimestamp="2020-01-01T00:00:00Z")
    created = (await cluster.create(doc))["metadata"]
    assert created["uid"] != "forged" and created["generation"] == 1
    assert "deletionTimestamp" not in created


async def test_every_write_gets_a_larger_resource_version(cluster: EmbeddedCluster) -> None:
    first = await cluster.create(configmap("a"))
    second = await cluster.create(configmap("b"))
    first["data"] = {"k": "v"}
    third = await cluster.update(first)
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3
    listed = await cluster.list("v1", "ConfigMap", "default")
    assert listed.resource_version == third["metadata"]["resourceVersion"]


async def test_create_twice_is_already_exists(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("dup"))
    with pytest.raises(AlreadyExists, match='configmaps "dup" already exists'):
        await cluster.create(configmap("dup"))
    await cluster.create(configmap("dup", namespace="other"))  # same name, other namespace


async def test_missing_objects_are_not_found(cluster: EmbeddedCluster) -> None:
    with pytest.raises(NotFound, match=re.escape('datavolumes.cdi.kubevirt.io "nope" not found')):
        await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", "nope", "default")
    with pytest.raises(NotFound):
        await cluster.update(configmap("nope"))
    with pytest.raises(NotFound):
        await cluster.patch("v1", "ConfigMap", "nope", {"data": {}}, "default")
    with pytest.raises(NotFound):
        await cluster.delete("v1", "ConfigMap", "nope", "default")


async def test_unknown_kind_is_not_found(cluster: EmbeddedCluster) -> None:
    with pytest.raises(NotFound, match="no matches for kind"):
        await cluster.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


async def test_stale_resource_version_conflicts(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("cm", data={"v": "1"}))
    fresh = dict(created, data={"v": "2"})
    await cluster.update(fresh)
    stale = dict(created, data={"v": "3"})
    with pytest.raises(Conflict, match="the object has been modified"):
        await cluster.update(stale)
    assert (await cluster.get("v1", "ConfigMap", "cm", "default"))["data"] == {"v": "2"}


async def test_update_without_resource_version_is_unconditional(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm", data={"v": "1"}))
    await cluster.patch("v1", "ConfigMap", "cm", {"data": {"v": "2"}}, "default")
    updated = await cluster.update(configmap("cm", data={"v": "3"}))
    assert updated["data"] == {"v": "3"}


async def test_update_with_another_uid_conflicts(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("cm"))
    created["metadata"]["uid"] = str(uuid.uuid4())
    with pytest.raises(Conflict, match="Precondition failed"):
        await cluster.update(created)


async def test_generation_rises_only_when_spec_changes(cluster: EmbeddedCluster) -> None:
    profile = await cluster.create(storageprofile("local"))
    profile["metadata"]["labels"] = {"a": "b"}
    profile = await cluster.update(profile)
    assert profile["metadata"]["generation"] == 1
    profile = await cluster.update_status(dict(profile, status={"provisioner": "p"}))
    assert profile["metadata"]["generation"] == 1
    profile["spec"]["cloneStrategy"] = "copy"
    profile = await cluster.update(profile)
    assert profile["metadata"]["generation"] == 2
    patched = await cluster.patch("cdi.kubevirt.io/v1beta1", "StorageProfile", "local",
                                  {"spec": {"cloneStrategy": "snapshot"}})
    assert patched["metadata"]["generation"] == 3


async def test_unchanged_update_writes_nothing(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("cm", data={"a": "1"}))
    again = await cluster.update(created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_status_subresource_separates_spec_and_status(cluster: EmbeddedCluster) -> None:
    profile = await cluster.create(dict(storageprofile("local"), status={"provisioner": "p"}))
    assert "status" not in profile  # dropped on create, as the API server does
    profile["status"] = {"provisioner": "q"}
    profile["spec"]["cloneStrategy"] = "copy"
    profile = await cluster.update(profile)
    assert "status" not in profile and profile["spec"]["cloneStrategy"] == "copy"
    profile["status"] = {"provisioner": "r", "storageClass": "local"}
    profile["spec"]["cloneStrategy"] = "snapshot"
    profile["metadata"]["labels"] = {"ignored": "yes"}
    profile = await cluster.update_status(profile)
    assert profile["status"] == {"provisioner": "r", "storageClass": "local"}
    assert profile["spec"]["cloneStrategy"] == "copy" and "labels" not in profile["metadata"]


async def test_patch_status_touches_only_status(cluster: EmbeddedCluster) -> None:
    await cluster.create(datavolume("disk"))
    api = "cdi.kubevirt.io/v1beta1"
    await cluster.patch_status(api, "DataVolume", "disk", {"status": {"phase": "Pending", "progress": "N/A"}},
                               "default")
    dv = await cluster.patch_status(api, "DataVolume", "disk",
                                    {"status": {"progress": None}, "spec": {"preallocation": True}}, "default")
    assert dv["status"] == {"phase": "Pending"} and "preallocation" not in dv["spec"]
    dv = await cluster.patch(api, "DataVolume", "disk", {"status": {"phase": "Failed"}}, "default")
    assert dv["status"] == {"phase": "Pending"}


async def test_kinds_without_status_subresource(cluster: EmbeddedCluster) -> None:
    cm = await cluster.create(configmap("cm", status={"note": "kept"}))
    assert cm["status"] == {"note": "kept"}
    with pytest.raises(NotFound, match="no status subresource"):
        await cluster.update_status(cm)
    with pytest.raises(NotFound, match="no status subresource"):
        await cluster.patch_status("v1", "ConfigMap", "cm", {"status": {}}, "default")


async def test_merge_patch_follows_rfc_7386(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm", data={"keep": "1", "drop": "2"}, labels={"a": "1", "b": "2"}))
    patched = await cluster.patch("v1", "ConfigMap", "cm", {
        "data": {"drop": None, "new": "3"},
        "metadata": {"labels": {"b": None, "c": "3"}, "annotations": {"x": "y"}},
        "binaryData": {"blob": "AAAA"},
    }, "default")
    assert patched["data"] == {"keep": "1", "new": "3"}
    assert patched["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert patched["metadata"]["annotations"] == {"x": "y"}
    assert patched["binaryData"] == {"blob": "AAAA"}
    replaced = await cluster.patch("v1", "ConfigMap", "cm", {"data": None}, "default")
    assert "data" not in replaced


async def test_patch_with_stale_resource_version_conflicts(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("cm"))
    await cluster.patch("v1", "ConfigMap", "cm", {"data": {"a": "1"}}, "default")
    with pytest.raises(Conflict):
        await cluster.patch("v1", "ConfigMap", "cm", {"metadata": {"resourceVersion":
                                                                   created["metadata"]["resourceVersion"]}},
                            "default")


async def test_patch_cannot_rename(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm"))
    patched = await cluster.patch("v1", "ConfigMap", "cm", {"metadata": {"name": "other", "uid": None}}, "default")
    assert patched["metadata"]["name"] == "cm" and patched["metadata"]["uid"]


async def test_generate_name(cluster: EmbeddedCluster) -> None:
    names = set()
    for _ in range(3):
        created = await cluster.create(configmap("", generateName="importer-"))
        name = created["metadata"]["name"]
        assert name.startswith("importer-") and len(name) == len("importer-") + 5
        names.add(name)
    assert len(names) == 3


async def test_namespace_rules(cluster: EmbeddedCluster) -> None:
    with pytest.raises(Invalid, match="namespace is required"):
        await cluster.create(configmap("cm", namespace=""))
    with pytest.raises(Invalid, match="namespace is required"):
        await cluster.get("v1", "ConfigMap", "cm")
    with pytest.raises(Invalid, match="cluster-scoped"):
        await cluster.get("storage.k8s.io/v1", "StorageClass", "local", "default")
    with pytest.raises(Invalid, match="cluster-scoped"):
        await cluster.list("v1", "PersistentVolume", "default")
    # As the API server does, a namespace in a cluster-scoped manifest is dropped.
    sc = await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                               "metadata": {"name": "local", "namespace": "default"}, "provisioner": "x"})
    assert "namespace" not in sc["metadata"]
    assert (await cluster.get("storage.k8s.io/v1", "StorageClass", "local"))["provisioner"] == "x"


async def test_names_must_be_dns_subdomains(cluster: EmbeddedCluster) -> None:
    for bad in ("", "Upper", "under_score", "-dash", "a" * 254):
        with pytest.raises(Invalid):
            await cluster.create(configmap(bad))


async def test_list_spans_namespaces_and_is_sorted(cluster: EmbeddedCluster) -> None:
    for namespace, name in (("b", "x"), ("a", "y"), ("a", "x")):
        await cluster.create(configmap(name, namespace=namespace))
    everything = await cluster.list("v1", "ConfigMap")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything.items] == [
        ("a", "x"), ("a", "y"), ("b", "x")]
    assert [o["metadata"]["name"] for o in (await cluster.list("v1", "ConfigMap", "a")).items] == ["x", "y"]


async def test_list_with_label_selectors(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("importer", labels={"app": "cdi", "role": "importer"}))
    await cluster.create(configmap("uploader", labels={"app": "cdi", "role": "upload"}))
    await cluster.create(configmap("other", labels={"app": "web"}))

    async def names(selector: dict[str, str] | str) -> list[str]:
        return [o["metadata"]["name"] for o in (await cluster.list("v1", "ConfigMap", "default", selector)).items]

    assert await names({"app": "cdi"}) == ["importer", "uploader"]
    assert await names("app=cdi,role!=upload") == ["importer"]
    assert await names("role in (importer,upload)") == ["importer", "uploader"]
    assert await names("!role") == ["other"]


async def test_objects_come_back_in_the_requested_version(cluster: EmbeddedCluster) -> None:
    await cluster.create({"apiVersion": "cdi.kubevirt.io/v1alpha1", "kind": "CDI", "metadata": {"name": "cdi"},
                          "spec": {}})
    stored = await cluster.get("cdi.kubevirt.io/v1beta1", "CDI", "cdi")
    assert stored["apiVersion"] == "cdi.kubevirt.io/v1beta1"
    old = await cluster.get("cdi.kubevirt.io/v1alpha1", "CDI", "cdi")
    assert old["apiVersion"] == "cdi.kubevirt.io/v1alpha1"


async def test_state_survives_a_restart(db_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(db_path, clock=clock) as first:
        created = await first.create(datavolume("disk"))
        await first.create(configmap("cm"))
        await first.delete("v1", "ConfigMap", "cm", "default")
    async with EmbeddedCluster(db_path, clock=clock) as second:
        assert await second.get("cdi.kubevirt.io/v1beta1", "DataVolume", "disk", "default") == created
        with pytest.raises(NotFound):
            await second.get("v1", "ConfigMap", "cm", "default")
        listed = await second.list("v1", "ConfigMap")
        later = await second.create(configmap("cm"))
        assert int(later["metadata"]["resourceVersion"]) > int(listed.resource_version) > int(
            created["metadata"]["resourceVersion"])
