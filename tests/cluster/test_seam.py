"""What a real API server has besides the basic verbs, through the `Cluster` seam: patch types,
delete options, paging and field selectors, bookmarks, create-only reviews, pod logs, discovery, and
errors with a retryable flag."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from cdi.cluster.errors import (
    BadRequest,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    ServerError,
    TooManyRequests,
    error_for_status,
)
from cdi.cluster.protocol import DeleteOptions
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.paths import log_path
from tests.cluster.manifests import configmap, owner_ref

MANAGER = "cdi-operator"


async def names(cluster: EmbeddedCluster, **options: object) -> list[str]:
    listed = await cluster.list("v1", "ConfigMap", "default", **options)  # type: ignore[arg-type]
    return [obj["metadata"]["name"] for obj in listed.items]


async def test_json_patch_operations_and_failures(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("cm", data={"a": "1", "b": "2"}))
    patched = await cluster.patch("v1", "ConfigMap", "cm", [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"x/y": "z"}},
        {"op": "copy", "from": "/data/a", "path": "/data/c"},
    ], "default", patch_type="json")
    assert patched["data"] == {"a": "10", "c": "10"} and patched["metadata"]["labels"] == {"x/y": "z"}
    with pytest.raises(Invalid, match="test failed"):
        await cluster.patch("v1", "ConfigMap", "cm", [{"op": "test", "path": "/data/a", "value": "1"}],
                            "default", patch_type="json")
    with pytest.raises(BadRequest):
        await cluster.patch("v1", "ConfigMap", "cm", {"op": "add"}, "default", patch_type="json")


async def test_server_side_apply_owns_merges_and_conflicts(cluster: EmbeddedCluster) -> None:
    config = configmap("cm", data={"a": "1", "b": "2"})
    created = await cluster.patch("v1", "ConfigMap", "cm", config, "default", patch_type="apply",
                                  field_manager=MANAGER)
    assert created["data"] == {"a": "1", "b": "2"}
    assert [e["manager"] for e in created["metadata"]["managedFields"]] == [MANAGER]
    # Another writer changes a field the operator owns: a later apply of a different value conflicts.
    await cluster.patch("v1", "ConfigMap", "cm", {"data": {"a": "edited"}}, "default", field_manager="kubectl-edit")
    with pytest.raises(Conflict, match=r'conflict with "kubectl-edit" using v1: \.data\.a'):
        await cluster.patch("v1", "ConfigMap", "cm", configmap("cm", data={"a": "3", "b": "2"}), "default",
                            patch_type="apply", field_manager=MANAGER)
    forced = await cluster.patch("v1", "ConfigMap", "cm", configmap("cm", data={"a": "3"}), "default",
                                 patch_type="apply", field_manager=MANAGER, force=True)
    # Forced: the field is taken over; "b", no longer applied and owned by nobody else, is removed.
    assert forced["data"] == {"a": "3"}
    owners = {e["manager"]: e for e in forced["metadata"]["managedFields"]}
    assert set(owners) == {MANAGER}


async def test_apply_keeps_fields_another_manager_also_owns(cluster: EmbeddedCluster) -> None:
    await cluster.patch("v1", "ConfigMap", "cm", configmap("cm", data={"a": "1", "b": "2"}), "default",
                        patch_type="apply", field_manager=MANAGER)
    await cluster.patch("v1", "ConfigMap", "cm", configmap("cm", data={"b": "2"}), "default",
                        patch_type="apply", field_manager="other")
    shrunk = await cluster.patch("v1", "ConfigMap", "cm", configmap("cm", data={"a": "1"}), "default",
                                 patch_type="apply", field_manager=MANAGER)
    assert shrunk["data"] == {"a": "1", "b": "2"}  # "other" still applies b


async def test_apply_needs_a_field_manager(cluster: EmbeddedCluster) -> None:
    with pytest.raises(BadRequest, match="fieldManager"):
        await cluster.patch("v1", "ConfigMap", "cm", configmap("cm"), "default", patch_type="apply")


async def test_delete_preconditions(cluster: EmbeddedCluster) -> None:
    created = await cluster.create(configmap("cm"))
    with pytest.raises(Conflict, match="Precondition failed: UID in precondition: wrong"):
        await cluster.delete("v1", "ConfigMap", "cm", "default", options=DeleteOptions(uid="wrong"))
    with pytest.raises(Conflict, match="ResourceVersion in precondition"):
        await cluster.delete("v1", "ConfigMap", "cm", "default", options=DeleteOptions(resource_version="1"))
    await cluster.delete("v1", "ConfigMap", "cm", "default",
                         options=DeleteOptions(uid=created["metadata"]["uid"],
                                               resource_version=created["metadata"]["resourceVersion"]))
    assert await names(cluster) == []


async def test_orphan_propagation_keeps_dependents(cluster: EmbeddedCluster) -> None:
    owner = await cluster.create(configmap("owner"))
    await cluster.create(configmap("child", ownerReferences=[owner_ref(owner)]))
    await cluster.delete("v1", "ConfigMap", "owner", "default", options=DeleteOptions("Orphan"))
    child = await cluster.get("v1", "ConfigMap", "child", "default")
    assert "ownerReferences" not in child["metadata"]


async def test_foreground_propagation_waits_for_blocking_dependents(cluster: EmbeddedCluster) -> None:
    owner = await cluster.create(configmap("owner"))
    await cluster.create(configmap("child", finalizers=["test/hold"],
                                   ownerReferences=[{**owner_ref(owner), "blockOwnerDeletion": True}]))
    await cluster.delete("v1", "ConfigMap", "owner", "default", options=DeleteOptions("Foreground"))
    waiting = await cluster.get("v1", "ConfigMap", "owner", "default")
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"] and waiting["metadata"]["deletionTimestamp"]
    child = await cluster.get("v1", "ConfigMap", "child", "default")
    assert child["metadata"]["deletionTimestamp"]  # dependents go first
    await cluster.patch("v1", "ConfigMap", "child", {"metadata": {"finalizers": None}}, "default")
    assert await names(cluster) == []


async def test_paging_with_continue_tokens(cluster: EmbeddedCluster) -> None:
    for i in range(5):
        await cluster.create(configmap(f"cm-{i}"))
    first = await cluster.list("v1", "ConfigMap", "default", limit=2)
    assert [o["metadata"]["name"] for o in first.items] == ["cm-0", "cm-1"] and first.continue_token
    second = await cluster.list("v1", "ConfigMap", "default", limit=2, continue_token=first.continue_token)
    third = await cluster.list("v1", "ConfigMap", "default", limit=2, continue_token=second.continue_token)
    assert [o["metadata"]["name"] for o in [*second.items, *third.items]] == ["cm-2", "cm-3", "cm-4"]
    assert third.continue_token == "" and second.resource_version == first.resource_version
    with pytest.raises(BadRequest):
        await cluster.list("v1", "ConfigMap", "default", continue_token="not-a-token")


async def test_expired_continue_token_is_gone(db_path: Path) -> None:
    async with EmbeddedCluster(db_path, retain_changes=0, retain_for=timedelta(0)) as c:
        for i in range(3):
            await c.create(configmap(f"cm-{i}"))
        first = await c.list("v1", "ConfigMap", "default", limit=1)
        for i in range(3, 6):
            await c.create(configmap(f"cm-{i}"))
        await c.compact()
        with pytest.raises(Gone, match="too old to display a consistent list"):
            await c.list("v1", "ConfigMap", "default", limit=1, continue_token=first.continue_token)


async def test_field_selectors(cluster: EmbeddedCluster) -> None:
    await cluster.create(configmap("a"))
    await cluster.create(configmap("b"))
    assert await names(cluster, field_selector="metadata.name=b") == ["b"]
    assert await names(cluster, field_selector="metadata.name!=b,metadata.namespace=default") == ["a"]
    with pytest.raises(BadRequest, match=r"field label not supported: data\.x"):
        await names(cluster, field_selector="data.x=1")
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                          "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]}})
    pods = await cluster.list("v1", "Pod", "default", field_selector="spec.nodeName=node-1")
    assert [p["metadata"]["name"] for p in pods.items] == ["p"]


async def test_watch_with_field_selector_and_bookmarks(db_path: Path) -> None:
    async with EmbeddedCluster(db_path, poll_interval=0.02, bookmark_interval=0.05) as cluster:
        start = (await cluster.list("v1", "ConfigMap", "default")).resource_version
        stream = cluster.watch("v1", "ConfigMap", resource_version=start, namespace="default",
                               field_selector="metadata.name=wanted", allow_bookmarks=True)
        await cluster.create(configmap("other"))
        await cluster.create(configmap("wanted"))
        seen = []
        async with asyncio.timeout(5):
            async for event in stream:
                seen.append((event.type, event.object["metadata"].get("name")))
                if event.type == "BOOKMARK":
                    assert int(event.object["metadata"]["resourceVersion"]) >= int(start) + 2
                    break
        assert seen[0] == ("ADDED", "wanted") and seen[-1] == ("BOOKMARK", None)


async def test_create_only_reviews_are_answered_not_stored(cluster: EmbeddedCluster) -> None:
    review = await cluster.create({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                   "metadata": {}, "spec": {"user": "alice", "resourceAttributes": {
                                       "group": "cdi.kubevirt.io", "resource": "datavolumes",
                                       "subresource": "source", "verb": "create", "namespace": "golden"}}})
    assert review["status"]["allowed"] is True and "embedded mode" in review["status"]["reason"]
    tokens = await cluster.create({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                   "metadata": {}, "spec": {"token": "forged"}})
    assert tokens["status"]["authenticated"] is False


async def test_pod_logs(cluster: EmbeddedCluster, db_path: Path) -> None:
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "importer-x", "namespace": "default"},
                          "spec": {"containers": [{"name": "importer", "image": "i"}]}})
    path = log_path(db_path.parent, "default", "importer-x", "importer", False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("one\ntwo\nthree\n")
    assert await cluster.pod_logs("importer-x", "default") == "one\ntwo\nthree\n"
    assert await cluster.pod_logs("importer-x", "default", tail_lines=1) == "three\n"
    with pytest.raises(BadRequest, match="previous terminated container"):
        await cluster.pod_logs("importer-x", "default", previous=True)
    with pytest.raises(NotFound):
        await cluster.pod_logs("missing", "default")


async def test_discovery_of_served_kinds(cluster: EmbeddedCluster) -> None:
    assert await cluster.served("cdi.kubevirt.io/v1beta1", "DataVolume")
    assert await cluster.served("snapshot.storage.k8s.io/v1", "VolumeSnapshot")
    assert not await cluster.served("example.com/v1", "Widget")


@pytest.mark.parametrize(("code", "reason", "cls", "retryable"), [
    (400, "BadRequest", BadRequest, False), (409, "Conflict", Conflict, True),
    (410, "Expired", Gone, True), (422, "Invalid", Invalid, False),
    (429, "TooManyRequests", TooManyRequests, True), (503, "ServiceUnavailable", ServerError, True),
])
def test_errors_carry_codes_and_a_retryable_flag(code: int, reason: str, cls: type, retryable: bool) -> None:
    error = error_for_status(code, reason, "message")
    assert isinstance(error, cls) and error.code == code and error.retryable is retryable


async def test_pods_are_scheduled_through_a_binding_and_their_spec_is_immutable(cluster: EmbeddedCluster) -> None:
    await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                          "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    with pytest.raises(Invalid, match="pod updates may not change fields"):
        await cluster.patch("v1", "Pod", "p", {"spec": {"nodeName": "node-1"}}, "default")
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "default"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    await cluster.create(binding)
    assert (await cluster.get("v1", "Pod", "p", "default"))["spec"]["nodeName"] == "node-1"
    with pytest.raises(Conflict, match='already assigned to node "node-1"'):
        await cluster.create(binding)
    image = await cluster.patch("v1", "Pod", "p", {"spec": {"containers": [{"name": "c", "image": "i:2"}]}},
                                "default")
    assert image["spec"]["containers"][0]["image"] == "i:2"  # the one change a pod allows
