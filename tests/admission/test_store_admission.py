"""Admission on every write to the embedded store, from any client: what a real API server refuses,
ours refuses too, with the API server's status and wording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cdi.admission import cdikinds
from cdi.cluster.errors import BadRequest, Forbidden, Invalid
from cdi.embedded import EmbeddedCluster

DV_API = "cdi.kubevirt.io/v1beta1"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "store.db") as store:
        yield store


def datavolume(size: str = "1Gi", **source: Any) -> dict[str, Any]:
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": "disk", "namespace": "default"},
            "spec": {"source": source or {"http": {"url": "https://example.test/disk.img"}},
                     "storage": {"resources": {"requests": {"storage": size}}}}}


def claim(size: Any = "1Gi", storage_class: str | None = "expandable", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}
    if storage_class:
        body["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"}, "spec": body}


async def bound_claim(cluster: EmbeddedCluster, **spec: Any) -> dict[str, Any]:
    for name, expand in (("expandable", True), ("fixed", False)):
        await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
                              "provisioner": "pycdi.local/hostpath", "allowVolumeExpansion": expand})
    await cluster.create(claim(**spec))
    await cluster.patch("v1", "PersistentVolumeClaim", "data", {"spec": {"volumeName": "pv-1"}}, "default")
    return await cluster.patch_status("v1", "PersistentVolumeClaim", "data",
                                      {"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}, "default")


async def test_unknown_field_is_a_strict_decoding_error(cluster: EmbeddedCluster) -> None:
    with pytest.raises(BadRequest) as caught:
        await cluster.create(datavolume(http={"url": "https://example.test/disk.img", "bogus": 1}))
    assert caught.value.message == ('DataVolume in version "v1beta1" cannot be handled as a DataVolume: '
                                    'strict decoding error: unknown field "spec.source.http.bogus"')
    assert caught.value.code == 400


async def test_unknown_status_field_is_refused_on_status_writes(cluster: EmbeddedCluster) -> None:
    await cluster.create(datavolume())
    with pytest.raises(BadRequest, match=r'unknown field "status\.bogus"'):
        await cluster.patch_status(DV_API, "DataVolume", "disk", {"status": {"bogus": "x"}}, "default")


async def test_stored_problems_do_not_block_later_writes(tmp_path: Path) -> None:
    """Ratcheting: an object stored before the rules (by an older version) still takes status writes."""
    async with EmbeddedCluster(tmp_path / "store.db", admission=lambda request, lookup: None) as lax:
        await lax.create(datavolume(http={"url": "https://example.test/disk.img", "legacy": True}))
    async with EmbeddedCluster(tmp_path / "store.db") as strict:
        written = await strict.patch_status(DV_API, "DataVolume", "disk", {"status": {"phase": "Pending"}}, "default")
    assert written["status"]["phase"] == "Pending"


async def test_a_valid_status_write_parses_only_the_new_object(cluster: EmbeddedCluster,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored object is parsed only to ratchet a problem or for a spec write's immutability rules:
    on the most frequent write, a controller's status update, admission did the schema work twice."""
    await cluster.create(datavolume())
    parsed: list[str] = []
    real_parse = cdikinds._parse

    def counting(doc: Any) -> Any:
        parsed.append((doc or {}).get("status", {}).get("phase", "-"))
        return real_parse(doc)

    monkeypatch.setattr(cdikinds, "_parse", counting)
    await cluster.patch_status(DV_API, "DataVolume", "disk", {"status": {"phase": "Pending"}}, "default")
    assert parsed == ["Pending"]
    parsed.clear()
    await cluster.patch(DV_API, "DataVolume", "disk", {"metadata": {"labels": {"a": "b"}}}, "default")
    assert len(parsed) == 2  # a spec-side write: the update rules compare with the stored object


@pytest.mark.parametrize(("size", "problem"), [
    ("999999999999999999999999Ei", "is larger than any volume can be"),
    ("0", "can't be equal or less than zero"),
    ("-1Gi", "can't be equal or less than zero"),
])
async def test_impossible_datavolume_sizes_are_refused_at_admission(cluster: EmbeddedCluster, size: str,
                                                                    problem: str) -> None:
    with pytest.raises(Invalid, match=problem) as caught:
        await cluster.create(datavolume(size))
    assert caught.value.message.startswith('admission webhook "datavolume-validate.cdi.kubevirt.io" denied')
    assert (await cluster.list(DV_API, "DataVolume", "default")).items == []


async def test_datavolume_spec_is_immutable(cluster: EmbeddedCluster) -> None:
    await cluster.create(datavolume())
    with pytest.raises(Invalid, match="Cannot update DataVolume Spec"):
        await cluster.patch(DV_API, "DataVolume", "disk", {"spec": {"preallocation": True}}, "default")
    labelled = await cluster.patch(DV_API, "DataVolume", "disk", {"metadata": {"labels": {"a": "b"}}}, "default")
    assert labelled["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(("size", "problem"), [
    ("999999999999999999999999Ei", "must be at most 8Ei"),
    ("0", "must be greater than zero"),
    ("-5Mi", "must be greater than zero"),
    ("lots", "quantities must match"),
    (None, "spec.resources[storage]: Required value"),
])
async def test_impossible_claim_sizes_are_refused(cluster: EmbeddedCluster, size: Any, problem: str) -> None:
    doc = claim(size)
    if size is None:
        doc["spec"]["resources"] = {}
    with pytest.raises(Invalid, match=problem.replace("[", r"\[").replace("]", r"\]")):
        await cluster.create(doc)


async def test_bound_claim_grows_only_where_the_class_allows(cluster: EmbeddedCluster) -> None:
    await bound_claim(cluster)
    grown = await cluster.patch("v1", "PersistentVolumeClaim", "data",
                                {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, "default")
    assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    with pytest.raises(Invalid, match="field can not be less than previous value"):
        await cluster.patch("v1", "PersistentVolumeClaim", "data",
                            {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}, "default")


async def test_growth_is_forbidden_without_allow_volume_expansion(cluster: EmbeddedCluster) -> None:
    await bound_claim(cluster, storage_class="fixed")
    with pytest.raises(Forbidden) as caught:
        await cluster.patch("v1", "PersistentVolumeClaim", "data",
                            {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, "default")
    assert caught.value.message == ('persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc '
                                    "can be resized and the storageclass that provisions the pvc must support resize")


@pytest.mark.parametrize("change", [
    {"accessModes": ["ReadWriteMany"]},
    {"volumeMode": "Block"},
    {"volumeName": "pv-2"},
    {"storageClassName": "fixed"},
])
async def test_bound_claim_spec_is_immutable(cluster: EmbeddedCluster, change: dict[str, Any]) -> None:
    await bound_claim(cluster)
    with pytest.raises(Invalid, match=r"spec is immutable after creation except resources\.requests"):
        await cluster.patch("v1", "PersistentVolumeClaim", "data", {"spec": change}, "default")


async def test_pending_claim_cannot_change_size(cluster: EmbeddedCluster) -> None:
    await cluster.create(claim(storage_class=None))
    # The default class may be set once (retroactive default StorageClass assignment) ...
    await cluster.patch("v1", "PersistentVolumeClaim", "data", {"spec": {"storageClassName": "local"}}, "default")
    # ... but an unbound claim's request is as immutable as the rest of its spec.
    with pytest.raises(Invalid, match="spec is immutable"):
        await cluster.patch("v1", "PersistentVolumeClaim", "data",
                            {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, "default")
