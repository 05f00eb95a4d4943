"""The embedded store's side of the seam that a real API server cannot be made to show in a test: continue
tokens past compaction, bookmarks on a short interval, pod logs from the runner's files, the embedded
answers to reviews, and the error table. Everything both backends share is in `tests/conformance/`."""

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
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.paths import log_path
from tests.cluster.manifests import configmap

MANAGER = "cdi-operator"


async def test_apply_needs_a_field_manager(cluster: EmbeddedCluster) -> None:
    with pytest.raises(BadRequest, match="fieldManager"):
        await cluster.patch("v1", "ConfigMap", "cm", configmap("cm"), "default", patch_type="apply")


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


