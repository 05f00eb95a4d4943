"""The `Cluster` seam's semantics, on both backends: the embedded store and a real kube-apiserver.

Each test runs twice (`cluster_backend`: embedded, kubernetes) in a namespace of its own. What a real
cluster does in the background (garbage collection by kube-controller-manager) is awaited with
`eventually`; everything else must hold at once on both.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cdi.cluster.errors import BadRequest, Conflict, Invalid, NotFound
from cdi.cluster.protocol import DeleteOptions
from tests.support.backends import Backend

MANAGER = "cdi-operator"


def configmap(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    for key in ("labels", "finalizers", "ownerReferences"):
        if key in fields:
            meta[key] = fields.pop(key)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **fields}


def owner_ref(owner: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"], **extra}


async def test_crud_and_conflicts(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    created = await c.create(configmap("a", ns, data={"x": "1"}))
    assert created["kind"] == "ConfigMap" and created["metadata"]["uid"]
    stale = dict(created)
    await c.patch("v1", "ConfigMap", "a", {"data": {"x": "2"}}, ns)
    with pytest.raises(Conflict):
        await c.update({**stale, "data": {"x": "3"}})
    listed = await c.list("v1", "ConfigMap", ns, {"app": "none"})
    assert listed.items == [] and listed.resource_version
    with pytest.raises(NotFound):
        await c.get("v1", "ConfigMap", "missing", ns)


async def test_json_patch(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    await c.create(configmap("cm", ns, data={"a": "1", "b": "2"}))
    patched = await c.patch("v1", "ConfigMap", "cm", [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "z"}},
        {"op": "copy", "from": "/data/a", "path": "/data/c"},
    ], ns, patch_type="json")
    assert patched["data"] == {"a": "10", "c": "10"} and patched["metadata"]["labels"] == {"x": "z"}
    with pytest.raises(Invalid, match="the server rejected our request"):
        await c.patch("v1", "ConfigMap", "cm", [{"op": "test", "path": "/data/a", "value": "1"}], ns,
                      patch_type="json")


async def test_server_side_apply(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    created = await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"a": "1", "b": "2"}), ns,
                            patch_type="apply", field_manager=MANAGER)
    assert created["data"] == {"a": "1", "b": "2"}
    assert MANAGER in [e["manager"] for e in created["metadata"]["managedFields"]]
    await c.patch("v1", "ConfigMap", "cm", {"data": {"a": "edited"}}, ns, field_manager="kubectl-edit")
    with pytest.raises(Conflict, match=r'conflict with "kubectl-edit" using v1: \.data\.a'):
        await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"a": "3", "b": "2"}), ns,
                      patch_type="apply", field_manager=MANAGER)
    forced = await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"a": "3"}), ns,
                           patch_type="apply", field_manager=MANAGER, force=True)
    assert forced["data"] == {"a": "3"}  # taken over; b, no longer applied and owned by no one else, removed


async def test_apply_keeps_fields_another_manager_also_owns(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"a": "1", "b": "2"}), ns,
                  patch_type="apply", field_manager=MANAGER)
    await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"b": "2"}), ns,
                  patch_type="apply", field_manager="other")
    shrunk = await c.patch("v1", "ConfigMap", "cm", configmap("cm", ns, data={"a": "1"}), ns,
                           patch_type="apply", field_manager=MANAGER)
    assert shrunk["data"] == {"a": "1", "b": "2"}


async def test_delete_preconditions(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    created = await c.create(configmap("cm", ns))
    with pytest.raises(Conflict, match=r"the UID in the precondition \(wrong\) does not match"):
        await c.delete("v1", "ConfigMap", "cm", ns, options=DeleteOptions(uid="wrong"))
    await c.delete("v1", "ConfigMap", "cm", ns, options=DeleteOptions(uid=created["metadata"]["uid"]))
    assert not await cluster_backend.exists("v1", "ConfigMap", "cm", ns)


async def test_background_orphan_and_foreground_propagation(cluster_backend: Backend) -> None:
    b, c, ns = cluster_backend, cluster_backend.cluster, cluster_backend.namespace
    owner = await c.create(configmap("owner", ns))
    await c.create(configmap("child", ns, ownerReferences=[owner_ref(owner)]))
    await c.delete("v1", "ConfigMap", "owner", ns)

    async def child_gone() -> bool:
        return not await b.exists("v1", "ConfigMap", "child", ns)
    await b.eventually(child_gone, "the background garbage collection of child")

    orphaner = await c.create(configmap("orphaner", ns))
    await c.create(configmap("orphan", ns, ownerReferences=[owner_ref(orphaner)]))
    await c.delete("v1", "ConfigMap", "orphaner", ns, options=DeleteOptions("Orphan"))

    async def freed() -> bool:
        try:
            orphan = await c.get("v1", "ConfigMap", "orphan", ns)
        except NotFound:
            return False
        return not orphan["metadata"].get("ownerReferences") and not await b.exists("v1", "ConfigMap", "orphaner", ns)
    await b.eventually(freed, "the orphaned dependent to lose its owner reference")

    waiter = await c.create(configmap("waiter", ns))
    await c.create(configmap("blocker", ns, finalizers=["test.pycdi/hold"],
                             ownerReferences=[owner_ref(waiter, blockOwnerDeletion=True)]))
    await c.delete("v1", "ConfigMap", "waiter", ns, options=DeleteOptions("Foreground"))
    waiting = await c.get("v1", "ConfigMap", "waiter", ns)
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"] and waiting["metadata"]["deletionTimestamp"]

    async def blocker_deleting() -> bool:
        return bool((await c.get("v1", "ConfigMap", "blocker", ns))["metadata"].get("deletionTimestamp"))
    await b.eventually(blocker_deleting, "the dependent to be deleted first")
    assert await b.exists("v1", "ConfigMap", "waiter", ns)
    await c.patch("v1", "ConfigMap", "blocker", {"metadata": {"finalizers": None}}, ns)

    async def waiter_gone() -> bool:
        return not await b.exists("v1", "ConfigMap", "waiter", ns)
    await b.eventually(waiter_gone, "the owner once its blocking dependent is gone")


async def test_paging_and_field_selectors(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    for i in range(5):
        await c.create(configmap(f"cm-{i}", ns, labels={"suite": "paging"}))
    first = await c.list("v1", "ConfigMap", ns, {"suite": "paging"}, limit=2)
    assert [o["metadata"]["name"] for o in first.items] == ["cm-0", "cm-1"] and first.continue_token
    second = await c.list("v1", "ConfigMap", ns, {"suite": "paging"}, limit=2, continue_token=first.continue_token)
    third = await c.list("v1", "ConfigMap", ns, {"suite": "paging"}, limit=2, continue_token=second.continue_token)
    assert [o["metadata"]["name"] for o in [*second.items, *third.items]] == ["cm-2", "cm-3", "cm-4"]
    assert third.continue_token == ""
    named = await c.list("v1", "ConfigMap", ns, field_selector="metadata.name=cm-3")
    assert [o["metadata"]["name"] for o in named.items] == ["cm-3"]
    with pytest.raises(BadRequest, match=r'"data\.x" is not a known field selector'):
        await c.list("v1", "ConfigMap", ns, field_selector="data.x=1")
    with pytest.raises(BadRequest, match=r"field label not supported: spec\.hostname"):
        await c.list("v1", "Pod", ns, field_selector="spec.hostname=x")
    await c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]}})
    pods = await c.list("v1", "Pod", ns, field_selector="spec.nodeName=node-1")
    assert [p["metadata"]["name"] for p in pods.items] == ["p"]


async def test_watch_with_a_field_selector(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    start = (await c.list("v1", "ConfigMap", ns)).resource_version
    stream = c.watch("v1", "ConfigMap", resource_version=start, namespace=ns, field_selector="metadata.name=wanted")
    await c.create(configmap("other", ns))
    await c.create(configmap("wanted", ns))
    async with asyncio.timeout(20):
        event = await stream.__anext__()
    assert (event.type, event.object["metadata"]["name"], event.object["kind"]) == ("ADDED", "wanted", "ConfigMap")
    await stream.aclose()  # type: ignore[attr-defined]


async def test_reviews_are_answered_not_stored(cluster_backend: Backend) -> None:
    c = cluster_backend.cluster
    review = await c.create({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                             "metadata": {}, "spec": {"user": "system:admin", "groups": ["system:masters"],
                                                      "resourceAttributes": {"verb": "create", "group": "cdi.kubevirt.io",
                                                                             "resource": "datavolumes",
                                                                             "subresource": "source"}}})
    assert review["status"]["allowed"] is True
    tokens = await c.create({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "metadata": {}, "spec": {"token": "forged"}})
    assert not tokens["status"].get("authenticated")


async def test_binding_and_pod_spec_immutability(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    await c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
                    "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    with pytest.raises(Invalid, match="pod updates may not change fields"):
        await c.patch("v1", "Pod", "p", {"spec": {"nodeName": "node-1"}}, ns)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": ns},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    await c.create(binding)
    assert (await c.get("v1", "Pod", "p", ns))["spec"]["nodeName"] == "node-1"
    with pytest.raises(Conflict, match='already assigned to node "node-1"'):
        await c.create(binding)


async def test_strict_decoding_and_cdi_admission(cluster_backend: Backend) -> None:
    c, ns = cluster_backend.cluster, cluster_backend.namespace
    dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "d", "namespace": ns},
          "spec": {"source": {"http": {"url": "https://example.test/d.img", "bogus": 1}},
                   "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}
    with pytest.raises(BadRequest, match=r'strict decoding error: unknown field "spec\.source\.http\.bogus"'):
        await c.create(dv)
    assert await c.served("cdi.kubevirt.io/v1beta1", "DataVolume")
    assert not await c.served("example.com/v1", "Widget")
