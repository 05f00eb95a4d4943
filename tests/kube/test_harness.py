"""Smoke tests of the real-Kubernetes harness: CDI's generated CRDs served by a real kube-apiserver.

Checks what later Kubernetes-backend suites rely on: every CRD from `cdi.api.crdgen` is accepted and
Established; a DataVolume from the shared manifests round-trips (create, read, merge-patch /status,
watch); strict field validation and RBAC are enforced; kube-controller-manager garbage-collects owned
objects and finishes namespace deletion; the server reports the pinned version.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config
from kubernetes_asyncio.watch import Watch

from cdi.api.crdgen import all_crds
from tests.api.manifests import FROM_SEED
from tests.support.kubecluster import KubeCluster

GROUP, VERSION, PLURAL = "cdi.kubevirt.io", "v1beta1", "datavolumes"
MERGE_PATCH = "application/merge-patch+json"
# The client's hints name its model classes; it takes plain dicts as bodies (and `_content_type`) at run
# time, which is what these tests mean to exercise, hence the few `type: ignore`s.


async def wait_until(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll the async `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def install_crds(api: ApiClient) -> list[str]:
    """Create every generated CRD (those already there are kept) and wait until all are Established."""
    extensions = ApiextensionsV1Api(api)
    names = []
    for crd in all_crds():
        names.append(crd["metadata"]["name"])
        try:
            await extensions.create_custom_resource_definition(body=crd)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 409:
                raise

    async def all_established() -> bool:
        for name in names:
            crd = await extensions.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in crd.status.conditions or []}
            if conditions.get("Established") != "True":
                return False
        return True

    await wait_until(all_established, "every CRD to be Established")
    return names


def status_message(error: ApiException) -> str:
    """The `message` of the Status object an API error carries."""
    message: str = json.loads(error.body or b"{}").get("message", "")
    return message


def datavolume(name: str) -> dict[str, Any]:
    """The seed's registry DataVolume as a user would submit it (status belongs to the controller)."""
    body = copy.deepcopy(FROM_SEED["registry-template"])
    body["metadata"] = {"name": name}
    body.pop("status", None)
    return body


async def test_every_generated_crd_is_established(kube_api: ApiClient) -> None:
    names = await install_crds(kube_api)

    served = await ApiextensionsV1Api(kube_api).list_custom_resource_definition()
    assert len(names) == len(all_crds()) >= 10
    assert set(names) <= {crd.metadata.name for crd in served.items}


async def test_datavolume_create_read_patch_status_and_watch(kube_api: ApiClient, kube_namespace: str) -> None:
    await install_crds(kube_api)
    custom = CustomObjectsApi(kube_api)

    created = await custom.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL,
                                                           datavolume("fedora-dv"), field_validation="Strict")
    read = await custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "fedora-dv")
    assert read["spec"] == datavolume("fedora-dv")["spec"]
    assert read["metadata"]["uid"] == created["metadata"]["uid"]

    patched = await custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
        GROUP, VERSION, kube_namespace, PLURAL, "fedora-dv",
        {"status": {"phase": "ImportScheduled", "progress": "N/A"}}, _content_type=MERGE_PATCH)
    assert patched["status"]["phase"] == "ImportScheduled"
    assert patched["spec"] == read["spec"]

    # Watching from the creation's resourceVersion replays the status change as MODIFIED.
    events = []
    async with Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, kube_namespace, PLURAL,
                              resource_version=created["metadata"]["resourceVersion"], timeout_seconds=20) as stream:
        async for event in stream:
            events.append((event["type"], event["object"].get("status", {}).get("phase")))
            if event["type"] == "MODIFIED":
                break
    assert ("MODIFIED", "ImportScheduled") in events


async def test_unknown_field_is_refused_under_strict_field_validation(kube_api: ApiClient,
                                                                      kube_namespace: str) -> None:
    await install_crds(kube_api)
    body = datavolume("typo-dv")
    body["spec"]["sorce"] = body["spec"]["source"]

    with pytest.raises(ApiException) as refused:
        await CustomObjectsApi(kube_api).create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL,
                                                                         body, field_validation="Strict")

    assert refused.value.status == 400
    assert 'strict decoding error: unknown field "spec.sorce"' in status_message(refused.value)


async def test_rbac_forbids_a_user_until_a_role_is_bound(kube_cluster: KubeCluster, kube_api: ApiClient,
                                                         kube_namespace: str) -> None:
    await install_crds(kube_api)
    kubeconfig = kube_cluster.kubeconfig_for("alice", groups=["dv-readers"])

    async with await new_client_from_config(config_file=str(kubeconfig), persist_config=False) as alice:
        with pytest.raises(ApiException) as forbidden:
            await CustomObjectsApi(alice).list_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL)
        assert forbidden.value.status == 403
        assert 'User "alice" cannot list resource "datavolumes"' in status_message(forbidden.value)

        rbac = RbacAuthorizationV1Api(kube_api)
        await rbac.create_namespaced_role(kube_namespace, {  # type: ignore[arg-type]
            "metadata": {"name": "dv-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}]})
        await rbac.create_namespaced_role_binding(kube_namespace, {  # type: ignore[arg-type]
            "metadata": {"name": "dv-readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dv-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dv-readers"}]})

        async def listed() -> bool:
            try:
                await CustomObjectsApi(alice).list_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL)
            except ApiException as error:
                if error.status != 403:
                    raise
                return False
            return True

        await wait_until(listed, "the role binding to let alice list DataVolumes", timeout=20)


async def test_garbage_collector_deletes_what_a_deleted_owner_owned(kube_api: ApiClient, kube_namespace: str) -> None:
    core = CoreV1Api(kube_api)
    owner = await core.create_namespaced_config_map(kube_namespace, {"metadata": {"name": "owner"}})  # type: ignore[arg-type]
    await core.create_namespaced_config_map(kube_namespace, {"metadata": {"name": "owned", "ownerReferences": [  # type: ignore[arg-type]
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})

    await core.delete_namespaced_config_map("owner", kube_namespace)

    async def owned_is_gone() -> bool:
        try:
            await core.read_namespaced_config_map("owned", kube_namespace)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    await wait_until(owned_is_gone, "the garbage collector to delete the owned ConfigMap", timeout=90)


async def test_namespace_controller_finishes_deleting_a_namespace_with_custom_resources(
        kube_api: ApiClient, kube_namespace: str) -> None:
    await install_crds(kube_api)
    await CustomObjectsApi(kube_api).create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL,
                                                                     datavolume("doomed"))
    core = CoreV1Api(kube_api)

    await core.delete_namespace(kube_namespace)

    async def namespace_is_gone() -> bool:
        try:
            await core.read_namespace(kube_namespace)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    await wait_until(namespace_is_gone, f"namespace {kube_namespace} to be deleted", timeout=90)


def test_server_reports_the_pinned_version(kube_cluster: KubeCluster) -> None:
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)

    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"
