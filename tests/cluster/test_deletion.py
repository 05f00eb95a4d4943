"""Deletion: finalizers and deletionTimestamp, ownerReference garbage collection, namespace teardown."""

from __future__ import annotations

import pytest

from cdi.cluster.errors import Invalid, NotFound
from cdi.embedded import EmbeddedCluster
from tests.cluster.conftest import FakeClock
from tests.cluster.manifests import configmap, datavolume, owner_ref

DV = "cdi.kubevirt.io/v1beta1"


async def exists(cluster: EmbeddedCluster, kind: str, name: str, namespace: str | None = "default") -> bool:
    api_version = DV if kind == "DataVolume" else "v1"
    try:
        await cluster.get(api_version, kind, name, namespace)
    except NotFound:
        return False
    return True


async def test_delete_without_finalizers_removes(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm"))
    await cluster.delete("v1", "ConfigMap", "cm", "default")
    assert not await exists(cluster, "ConfigMap", "cm")


async def test_finalizers_hold_deletion_until_the_last_is_removed(cluster: EmbeddedCluster,
                                                                  clock: FakeClock) -> None:
    await cluster.create(datavolume("disk", finalizers=["a/one", "b/two"]))
    clock.advance(30)
    await cluster.delete(DV, "DataVolume", "disk", "default")
    dv = await cluster.get(DV, "DataVolume", "disk", "default")
    assert dv["metadata"]["deletionTimestamp"] == "2024-05-01T12:00:30Z"
    clock.advance(30)
    await cluster.delete(DV, "DataVolume", "disk", "default")  # deleting again changes nothing
    again = await cluster.get(DV, "DataVolume", "disk", "default")
    assert again["metadata"]["resourceVersion"] == dv["metadata"]["resourceVersion"]

    dv["metadata"]["finalizers"] = ["b/two"]
    dv = await cluster.update(dv)
    assert dv["metadata"]["deletionTimestamp"] == "2024-05-01T12:00:30Z"
    await cluster.patch(DV, "DataVolume", "disk", {"metadata": {"finalizers": None}}, "default")
    assert not await exists(cluster, "DataVolume", "disk")


async def test_no_new_finalizers_while_deleting(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm", finalizers=["a/one"]))
    await cluster.delete("v1", "ConfigMap", "cm", "default")
    with pytest.raises(Invalid, match="no new finalizers"):
        await cluster.patch("v1", "ConfigMap", "cm", {"metadata": {"finalizers": ["a/one", "b/two"]}}, "default")


async def test_updates_cannot_clear_deletion_timestamp(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm", finalizers=["a/one"]))
    await cluster.delete("v1", "ConfigMap", "cm", "default")
    cm = await cluster.patch("v1", "ConfigMap", "cm", {"metadata": {"deletionTimestamp": None},
                                                       "data": {"x": "y"}}, "default")
    assert cm["metadata"]["deletionTimestamp"] and cm["data"] == {"x": "y"}


async def test_owner_deletion_collects_dependents_recursively(cluster: EmbeddedCluster) -> None:
    dv = await cluster.create(datavolume("disk"))
    pvc = await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": "disk", "namespace": "default",
                                             "ownerReferences": [owner_ref(dv)]},
                                "spec": {"accessModes": ["ReadWriteOnce"],
                                         "resources": {"requests": {"storage": "1Gi"}}}})
    pod = await cluster.create({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": "importer-disk", "namespace": "default",
                                             "ownerReferences": [owner_ref(pvc)]}})
    await cluster.create(configmap("pod-config", ownerReferences=[owner_ref(pod)]))
    await cluster.create(configmap("unrelated"))

    await cluster.delete(DV, "DataVolume", "disk", "default")

    assert not await exists(cluster, "PersistentVolumeClaim", "disk")
    assert not await exists(cluster, "Pod", "importer-disk")
    assert not await exists(cluster, "ConfigMap", "pod-config")
    assert await exists(cluster, "ConfigMap", "unrelated")


async def test_owners_follow_updates_of_the_owner_references(cluster: EmbeddedCluster) -> None:
    """An update that adds, swaps or keeps owners changes what a deletion collects (the store skips
    rewriting its owner rows only when the references stay as they were)."""
    first, second = await cluster.create(configmap("first")), await cluster.create(configmap("second"))
    await cluster.create(configmap("adopted"))
    await cluster.patch("v1", "ConfigMap", "adopted", {"metadata": {"ownerReferences": [owner_ref(first)]}},
                        "default")
    await cluster.create(configmap("moved", ownerReferences=[owner_ref(first)]))
    await cluster.patch("v1", "ConfigMap", "moved", {"metadata": {"ownerReferences": [owner_ref(second)]}},
                        "default")
    await cluster.create(configmap("kept", ownerReferences=[owner_ref(second)]))
    await cluster.patch("v1", "ConfigMap", "kept", {"metadata": {"labels": {"touched": "yes"}}}, "default")

    await cluster.delete("v1", "ConfigMap", "first", "default")
    assert not await exists(cluster, "ConfigMap", "adopted")
    assert await exists(cluster, "ConfigMap", "moved")
    await cluster.delete("v1", "ConfigMap", "second", "default")
    assert not await exists(cluster, "ConfigMap", "moved")
    assert not await exists(cluster, "ConfigMap", "kept")


async def test_dependent_with_finalizer_waits_and_blocks_nothing_else(cluster: EmbeddedCluster) -> None:
    owner = await cluster.create(configmap("owner"))
    held = await cluster.create(configmap("held", finalizers=["cdi.kubevirt.io/cleanup"],
                                          ownerReferences=[owner_ref(owner)]))
    await cluster.create(configmap("grandchild", ownerReferences=[owner_ref(held)]))
    await cluster.delete("v1", "ConfigMap", "owner", "default")

    waiting = await cluster.get("v1", "ConfigMap", "held", "default")
    assert waiting["metadata"]["deletionTimestamp"]
    assert await exists(cluster, "ConfigMap", "grandchild")  # its owner still exists, being deleted

    await cluster.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": []}}, "default")
    assert not await exists(cluster, "ConfigMap", "held")
    assert not await exists(cluster, "ConfigMap", "grandchild")


async def test_owner_being_finalized_keeps_its_dependents(cluster: EmbeddedCluster) -> None:
    owner = await cluster.create(configmap("owner", finalizers=["x/y"]))
    await cluster.create(configmap("child", ownerReferences=[owner_ref(owner)]))
    await cluster.delete("v1", "ConfigMap", "owner", "default")
    assert await exists(cluster, "ConfigMap", "child")
    await cluster.patch("v1", "ConfigMap", "owner", {"metadata": {"finalizers": None}}, "default")
    assert not await exists(cluster, "ConfigMap", "child")


async def test_a_dependent_with_a_live_owner_stays(cluster: EmbeddedCluster) -> None:
    first = await cluster.create(configmap("first"))
    second = await cluster.create(configmap("second"))
    await cluster.create(configmap("shared", ownerReferences=[owner_ref(first), owner_ref(second)]))
    await cluster.delete("v1", "ConfigMap", "first", "default")
    shared = await cluster.get("v1", "ConfigMap", "shared", "default")
    assert [ref["name"] for ref in shared["metadata"]["ownerReferences"]] == ["second"]
    await cluster.delete("v1", "ConfigMap", "second", "default")
    assert not await exists(cluster, "ConfigMap", "shared")


async def test_dependents_of_owners_that_never_existed_are_collected(cluster: EmbeddedCluster) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "0f0f0f0f-dead-4bee-8000-000000000000"}
    await cluster.create(configmap("orphan", ownerReferences=[ghost]))
    await cluster.collect_garbage()
    assert not await exists(cluster, "ConfigMap", "orphan")


async def test_cluster_scoped_owner_and_cross_namespace_owner(cluster: EmbeddedCluster) -> None:
    profile = await cluster.create({"apiVersion": DV, "kind": "StorageProfile", "metadata": {"name": "local"},
                                    "spec": {}})
    elsewhere = await cluster.create(configmap("elsewhere", namespace="other"))
    await cluster.create(configmap("of-profile", ownerReferences=[owner_ref(profile)]))
    await cluster.create(configmap("of-elsewhere", ownerReferences=[owner_ref(elsewhere)]))
    # An owner in another namespace is no owner at all, as Kubernetes' collector decides.
    assert not await exists(cluster, "ConfigMap", "of-elsewhere")
    await cluster.delete(DV, "StorageProfile", "local")
    assert not await exists(cluster, "ConfigMap", "of-profile")


async def test_deleting_a_namespace_deletes_its_contents(cluster: EmbeddedCluster) -> None:
    await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await cluster.create(configmap("plain", namespace="team"))
    await cluster.create(configmap("held", namespace="team", finalizers=["x/y"]))
    await cluster.create(configmap("outside", namespace="default"))

    await cluster.delete("v1", "Namespace", "team")
    namespace = await cluster.get("v1", "Namespace", "team")
    assert namespace["status"]["phase"] == "Terminating"
    assert not await exists(cluster, "ConfigMap", "plain", "team")
    assert await exists(cluster, "ConfigMap", "outside")

    await cluster.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, "team")
    assert not await exists(cluster, "Namespace", "team", None)


async def test_a_write_collects_what_it_orphans_without_an_explicit_sweep(cluster: EmbeddedCluster) -> None:
    """The collector after a write looks only at what that write touched (the objects it wrote with owners,
    the dependents of those it removed): that is enough for everything a write can orphan."""
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "0f0f0f0f-dead-4bee-8000-000000000001"}
    await cluster.create(configmap("orphan", ownerReferences=[ghost]))
    assert not await exists(cluster, "ConfigMap", "orphan")  # collected by its own create
    owner = await cluster.create(configmap("owner"))
    other = await cluster.create(configmap("other"))
    await cluster.create(configmap("child", ownerReferences=[owner_ref(owner)]))
    await cluster.create(configmap("grandchild", ownerReferences=[owner_ref(await cluster.get(
        "v1", "ConfigMap", "child", "default"))]))
    await cluster.create(configmap("unrelated", ownerReferences=[owner_ref(other)]))
    await cluster.delete("v1", "ConfigMap", "owner", "default")
    assert not await exists(cluster, "ConfigMap", "child")
    assert not await exists(cluster, "ConfigMap", "grandchild")  # orphaned by the collection itself
    assert await exists(cluster, "ConfigMap", "unrelated")
