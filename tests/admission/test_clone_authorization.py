"""Cross-namespace clone authorization: the pure rules (which source, which SubjectAccessReviews, how their
answers combine) as tables, then the embedded store's mutating admission adding the clone token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cdi.admission.clonesource import (
    AccessCheck,
    CloneSource,
    RequestingUser,
    access_alternatives,
    access_review,
    clone_source,
    next_check,
    verdict,
)
from cdi.admission.clonetoken import CloneTokenMutation, clone_token_patch
from cdi.cli.state import clone_key_path, open_cluster
from cdi.cluster.errors import Forbidden, Invalid
from cdi.cluster.protocol import Object
from cdi.contracts.annotations import ANN_CLONE_TOKEN
from cdi.embedded import EmbeddedCluster
from cdi.embedded.clonetokens import SigningKeyFile
from cdi.embedded.jsonpatch import apply_json_patch
from cdi.tokens import CloneTokens, SigningKey, generate_signing_key

DV_API = "cdi.kubevirt.io/v1beta1"
NOW = 1_800_000_000.0

SOURCE_GRANT_PVC = AccessCheck("golden", "create", "datavolumes", "cdi.kubevirt.io", "source", "fedora")
PODS = AccessCheck("golden", "create", "pods")
PVCS = AccessCheck("golden", "create", "pvcs")


def datavolume(name: str = "disk", namespace: str = "vms", annotations: dict[str, str] | None = None,
               **spec: Any) -> Object:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": meta,
            "spec": {**spec, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def pvc_clone(namespace: str = "golden", **meta: Any) -> Object:
    return datavolume(source={"pvc": {"namespace": namespace, "name": "fedora"}}, **meta)


def data_source(name: str, namespace: str, source: dict[str, Any]) -> Object:
    return {"apiVersion": DV_API, "kind": "DataSource", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": source}}


def lookup_of(*objects: Object) -> Any:
    stored = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o for o in objects}
    return lambda group, kind, name, namespace: stored.get((kind, name, namespace))


# --- Which source, and whether a token is needed ----------------------------------------------------

@pytest.mark.parametrize(("dv", "expected"), [
    (pvc_clone(), CloneSource("pvc", "golden", "fedora", "spec.source.pvc")),
    (datavolume(source={"snapshot": {"namespace": "golden", "name": "snap"}}),
     CloneSource("snapshot", "golden", "snap", "spec.source.snapshot")),
    (pvc_clone(namespace="vms"), None),  # same namespace: no token
    (pvc_clone(namespace=""), None),  # defaults to the DataVolume's namespace
    (datavolume(source={"http": {"url": "https://example.test/d.img"}}), None),
    (datavolume(sourceRef={"kind": "DataSource", "name": "fedora", "namespace": "os"}),
     CloneSource("pvc", "golden", "fedora", "spec.sourceRef")),
    (datavolume(sourceRef={"kind": "DataSource", "name": "chained", "namespace": "os"}),
     CloneSource("snapshot", "golden", "snap", "spec.sourceRef")),
    (datavolume(sourceRef={"kind": "DataSource", "name": "local"}), None),  # the DataSource names vms/fedora
])
def test_the_clone_source(dv: Object, expected: CloneSource | None) -> None:
    lookup = lookup_of(
        data_source("fedora", "os", {"pvc": {"namespace": "golden", "name": "fedora"}}),
        data_source("chained", "os", {"dataSource": {"namespace": "os", "name": "snap"}}),
        data_source("snap", "os", {"snapshot": {"namespace": "golden", "name": "snap"}}),
        data_source("local", "vms", {"pvc": {"namespace": "vms", "name": "fedora"}}),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "golden"}})
    assert clone_source(dv, lookup) == expected


def test_a_missing_data_source_or_namespace_is_refused_unless_the_datavolume_adopts_a_volume() -> None:
    by_ref = datavolume(sourceRef={"kind": "DataSource", "name": "gone", "namespace": "os"})
    with pytest.raises(Invalid) as caught:
        clone_source(by_ref, lookup_of())
    assert caught.value.message == ('admission webhook "datavolume-mutate.cdi.kubevirt.io" denied the request: '
                                    'spec.sourceRef: datasources.cdi.kubevirt.io "gone" not found')
    with pytest.raises(Invalid) as caught:
        clone_source(pvc_clone(), lookup_of())
    assert caught.value.causes == ['spec.source.pvc: namespaces "golden" not found']
    assert clone_source(pvc_clone(), lookup_of(), check_namespace=False) is not None  # embedded: no Namespace objects
    for adopting in ("cdi.kubevirt.io/storage.prePopulated", "cdi.kubevirt.io/storage.checkStaticVolume"):
        assert clone_source({**by_ref, "metadata": {**by_ref["metadata"], "annotations": {adopting: "true"}}},
                            lookup_of()) is None


# --- Which reviews, and how they combine -------------------------------------------------------------

def test_what_may_authorize_a_clone() -> None:
    assert access_alternatives(CloneSource("pvc", "golden", "fedora", "spec.source.pvc")) == (
        (SOURCE_GRANT_PVC,), (PODS,))
    assert access_alternatives(CloneSource("snapshot", "golden", "snap", "spec.source.snapshot")) == (
        (AccessCheck("golden", "create", "datavolumes", "cdi.kubevirt.io", "source", "snap"),), (PODS, PVCS))


PVC_RULES = ((SOURCE_GRANT_PVC,), (PODS,))
SNAPSHOT_RULES = ((SOURCE_GRANT_PVC,), (PODS, PVCS))


@pytest.mark.parametrize(("rules", "allowed", "asked", "expected"), [
    (PVC_RULES, {SOURCE_GRANT_PVC}, [SOURCE_GRANT_PVC], True),
    (PVC_RULES, {PODS}, [SOURCE_GRANT_PVC, PODS], True),
    (PVC_RULES, set(), [SOURCE_GRANT_PVC, PODS], False),
    (SNAPSHOT_RULES, {SOURCE_GRANT_PVC}, [SOURCE_GRANT_PVC], True),
    (SNAPSHOT_RULES, {PODS, PVCS}, [SOURCE_GRANT_PVC, PODS, PVCS], True),
    (SNAPSHOT_RULES, {PODS}, [SOURCE_GRANT_PVC, PODS, PVCS], False),
    (SNAPSHOT_RULES, {PVCS}, [SOURCE_GRANT_PVC, PODS], False),  # pods denied: pvcs need not be asked
    (SNAPSHOT_RULES, set(), [SOURCE_GRANT_PVC, PODS], False),
])
def test_the_reviews_are_asked_lazily_and_combined(rules: Any, allowed: set[AccessCheck], asked: list[AccessCheck],
                                                    expected: bool) -> None:
    answers: dict[AccessCheck, bool] = {}
    while (check := next_check(rules, answers)) is not None:
        answers[check] = check in allowed
    assert list(answers) == asked
    assert verdict(rules, answers) is expected


def test_the_review_carries_the_requesting_user() -> None:
    user = RequestingUser.from_user_info({"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"],
                                          "extra": {"scopes": ["a", "b"]}})
    assert access_review(user, SOURCE_GRANT_PVC) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"],
                 "extra": {"scopes": ["a", "b"]},
                 "resourceAttributes": {"namespace": "golden", "verb": "create", "group": "cdi.kubevirt.io",
                                        "resource": "datavolumes", "subresource": "source", "name": "fedora"}}}
    assert access_review(RequestingUser("bob"), PODS)["spec"] == {
        "user": "bob", "groups": [], "resourceAttributes": {"namespace": "golden", "verb": "create", "group": "",
                                                            "resource": "pods"}}


@pytest.mark.parametrize("annotations", [None, {"a": "b"}, {ANN_CLONE_TOKEN: "stale"}])
def test_the_webhook_patch_adds_the_annotation(annotations: dict[str, str] | None) -> None:
    dv = pvc_clone(annotations=annotations)
    patched = apply_json_patch(dv, clone_token_patch(dv, "t0ken"))
    assert patched["metadata"]["annotations"] == {**(annotations or {}), ANN_CLONE_TOKEN: "t0ken"}


# --- The embedded store -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key(NOW)


@pytest.fixture
def tokens(key: SigningKey) -> CloneTokens:
    return CloneTokens.from_key(key)


@pytest.fixture
async def cluster(tmp_path: Path, tokens: CloneTokens) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "store.db", mutation=CloneTokenMutation(tokens, clock=lambda: NOW)) as store:
        yield store


async def test_a_cross_namespace_clone_gets_a_token_the_controller_accepts(cluster: EmbeddedCluster,
                                                                           tokens: CloneTokens) -> None:
    created = await cluster.create(pvc_clone())
    token = created["metadata"]["annotations"][ANN_CLONE_TOKEN]
    assert (await cluster.get(DV_API, "DataVolume", "disk", "vms"))["metadata"]["annotations"] == {
        ANN_CLONE_TOKEN: token}
    tokens.verify(token, source_kind="pvc", source_namespace="golden", source_name="fedora", target_namespace="vms",
                  target_name="disk", uid=created["metadata"]["uid"], now=NOW)


async def test_through_a_data_source_too(cluster: EmbeddedCluster, tokens: CloneTokens) -> None:
    await cluster.create(data_source("fedora", "os", {"snapshot": {"namespace": "golden", "name": "snap"}}))
    created = await cluster.create(datavolume(sourceRef={"kind": "DataSource", "name": "fedora", "namespace": "os"}))
    tokens.verify(created["metadata"]["annotations"][ANN_CLONE_TOKEN], source_kind="snapshot",
                  source_namespace="golden", source_name="snap", target_namespace="vms", target_name="disk", uid=None,
                  now=NOW)
    with pytest.raises(Invalid):
        await cluster.create(datavolume("other", sourceRef={"kind": "DataSource", "name": "gone"}))


async def test_a_same_namespace_clone_and_an_import_get_none(cluster: EmbeddedCluster) -> None:
    same = await cluster.create(pvc_clone(namespace="vms"))
    imported = await cluster.create(datavolume("imported", source={"http": {"url": "https://example.test/d.img"}}))
    assert ANN_CLONE_TOKEN not in (same["metadata"].get("annotations") or {})
    assert ANN_CLONE_TOKEN not in (imported["metadata"].get("annotations") or {})


async def test_an_update_gets_no_token(tmp_path: Path, tokens: CloneTokens) -> None:
    """Only a create is authorized: an update neither adds a token nor renews one."""
    async with EmbeddedCluster(tmp_path / "store.db") as plain:  # written without the mutation
        await plain.create(pvc_clone())
    async with EmbeddedCluster(tmp_path / "store.db", mutation=CloneTokenMutation(tokens, clock=lambda: NOW)) as store:
        patched = await store.patch(DV_API, "DataVolume", "disk", {"metadata": {"labels": {"a": "b"}}}, "vms")
        assert ANN_CLONE_TOKEN not in (patched["metadata"].get("annotations") or {})
        applied = await store.patch(DV_API, "DataVolume", "applied", pvc_clone(name="applied"), "vms", patch_type="apply",
                                    field_manager="test")
        assert ANN_CLONE_TOKEN in applied["metadata"]["annotations"]  # a create through server-side apply


async def test_a_denying_authorizer_refuses_with_upstreams_words(tmp_path: Path, tokens: CloneTokens) -> None:
    asked: list[AccessCheck] = []

    def deny(check: AccessCheck) -> bool:
        asked.append(check)
        return False

    mutation = CloneTokenMutation(tokens, clock=lambda: NOW, authorize=deny, user="alice")
    async with EmbeddedCluster(tmp_path / "store.db", mutation=mutation) as store:
        with pytest.raises(Forbidden) as caught:
            await store.create(pvc_clone())
        assert caught.value.message == ('admission webhook "datavolume-mutate.cdi.kubevirt.io" denied the request: '
                                        "User alice has insufficient permissions in clone source namespace golden")
        assert asked == [SOURCE_GRANT_PVC, PODS]
        assert (await store.list(DV_API, "DataVolume", "vms")).items == []


# --- Embedded mode's key, and the CLI's store ---------------------------------------------------------

def test_the_embedded_clone_key_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "home" / "clone-signing-key.pem"
    first = SigningKeyFile(path).ring().current
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKeyFile(path).ring().current.kid == first.kid  # another process loads the same key
    assert [p.name for p in path.parent.iterdir()] == ["clone-signing-key.pem"]  # no temporary left behind


async def test_a_cli_store_adds_a_token_before_any_control_plane_ran(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with open_cluster(home, create=True, warn=False) as store:
        created = await store.create(pvc_clone())
    token = created["metadata"]["annotations"][ANN_CLONE_TOKEN]
    SigningKeyFile(clone_key_path(home)).clone_tokens().verify(
        token, source_kind="pvc", source_namespace="golden", source_name="fedora", target_namespace="vms",
        target_name="disk", uid=None, now=time.time())
