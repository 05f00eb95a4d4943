"""The VolumeSnapshot CRDs' rules, refused alike by the embedded store's admission and by a real API
server through the rendered CRDs' CEL rules."""

from __future__ import annotations

from typing import Any

import pytest

from cdi.cluster.errors import Invalid
from tests.snapshots.conftest import VS, VSC, Harness

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


def snapshot(h: Harness, name: str, source: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "metadata": {"name": name, "namespace": h.namespace},
            "spec": {"source": source, **spec}}


def content(name: str, source: dict[str, str], ref: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent", "metadata": {"name": name},
            "spec": {"deletionPolicy": "Delete", "driver": "local.csi.pycdi.io", "source": source,
                     "volumeSnapshotRef": ref}}


async def refused(h: Harness, obj: dict[str, Any]) -> str:
    with pytest.raises(Invalid) as raised:
        await h.cluster.create(obj)
    return str(raised.value)


async def test_a_snapshot_source_is_exactly_one_field_and_immutable(harness: Harness) -> None:
    h = harness
    both = {"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}
    one_of = "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set"
    assert one_of in await refused(h, snapshot(h, "both", both))
    assert one_of in await refused(h, snapshot(h, "neither", {}))
    assert "volumeSnapshotClassName must not be the empty string when set" in await refused(
        h, snapshot(h, "empty-class", {"persistentVolumeClaimName": "a"}, volumeSnapshotClassName=""))

    await h.cluster.create(snapshot(h, "snap", {"persistentVolumeClaimName": "a"}))
    with pytest.raises(Invalid) as raised:
        await h.cluster.patch(*VS, "snap", {"spec": {"source": {"persistentVolumeClaimName": "b"}}}, h.namespace)
    assert "persistentVolumeClaimName is immutable" in str(raised.value)
    await h.cluster.patch(*VS, "snap", {"metadata": {"labels": {"kept": "yes"}}}, h.namespace)  # the rest may change


async def test_a_content_source_is_exactly_one_handle_and_names_its_snapshot(harness: Harness) -> None:
    h = harness
    ref = {"name": "snap", "namespace": h.namespace}
    name = f"content-{h.namespace}"
    assert "exactly one of snapshotHandle and volumeHandle must be set" in await refused(
        h, content(name, {"volumeHandle": "v", "snapshotHandle": "s"}, ref))
    assert "both spec.volumeSnapshotRef.name and spec.volumeSnapshotRef.namespace must be set" in await refused(
        h, content(name, {"snapshotHandle": "s"}, {"name": "snap"}))

    await h.cluster.create(content(name, {"snapshotHandle": "s"}, ref))
    with pytest.raises(Invalid) as raised:
        await h.cluster.patch(*VSC, name, {"spec": {"source": {"snapshotHandle": "other"}}})
    assert "snapshotHandle is immutable" in str(raised.value)
    await h.cluster.delete(*VSC, name)
