"""The kind registry: Kubernetes' scope facts, CDI kinds derived from the API table, and the CLI resolver."""

from __future__ import annotations

import pytest

from cdi.api.kinds import KINDS
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import DEFAULT_KINDS, UnknownKind, lookup, resolve


@pytest.mark.parametrize(("word", "api_version", "kind"), [
    ("dv", "cdi.kubevirt.io/v1beta1", "DataVolume"),
    ("datavolumes", "cdi.kubevirt.io/v1beta1", "DataVolume"),
    ("DataVolume", "cdi.kubevirt.io/v1beta1", "DataVolume"),
    ("datavolume.cdi.kubevirt.io", "cdi.kubevirt.io/v1beta1", "DataVolume"),
    ("storageprofile", "cdi.kubevirt.io/v1beta1", "StorageProfile"),
    ("pvc", "v1", "PersistentVolumeClaim"),
    ("pods", "v1", "Pod"),
    ("po", "v1", "Pod"),
    ("sc", "storage.k8s.io/v1", "StorageClass"),
    ("vs", "snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
    ("ns", "v1", "Namespace"),
    ("events", "v1", "Event"),
    ("leases", "coordination.k8s.io/v1", "Lease"),
    (" DIC ", "cdi.kubevirt.io/v1beta1", "DataImportCron"),
])
def test_resolve_user_words(word: str, api_version: str, kind: str) -> None:
    found = resolve(word)
    assert (found.api_version, found.kind) == (api_version, kind)


def test_unknown_word_is_a_not_found_with_the_word() -> None:
    with pytest.raises(NotFound, match='resource type "widgets"'):
        resolve("widgets")


def test_lookup_by_api_version_and_kind() -> None:
    assert lookup("v1", "PersistentVolume").namespaced is False
    assert lookup("cdi.kubevirt.io/v1alpha1", "CDI") is lookup("cdi.kubevirt.io/v1beta1", "CDI")
    with pytest.raises(UnknownKind, match='no matches for kind "Pod" in version "apps/v1"'):
        lookup("apps/v1", "Pod")


@pytest.mark.parametrize(("api_version", "kind", "namespaced", "status"), [
    ("v1", "Namespace", False, True),
    ("v1", "Pod", True, True),
    ("v1", "PersistentVolumeClaim", True, True),
    ("v1", "PersistentVolume", False, True),
    ("v1", "Service", True, True),
    ("v1", "Secret", True, False),
    ("v1", "ConfigMap", True, False),
    ("v1", "Event", True, False),
    ("storage.k8s.io/v1", "StorageClass", False, False),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot", True, True),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", False, False),
    ("coordination.k8s.io/v1", "Lease", True, False),
])
def test_kubernetes_scope_and_status_facts(api_version: str, kind: str, namespaced: bool, status: bool) -> None:
    served = lookup(api_version, kind)
    assert (served.namespaced, served.status_subresource) == (namespaced, status)


def test_every_cdi_kind_is_served_as_the_api_table_declares() -> None:
    for info in KINDS.values():
        served = lookup(info.api_version, info.kind)
        assert (served.plural, served.namespaced, served.status_subresource) == (
            info.plural, info.namespaced, info.status_subresource)
        assert set(info.short_names) <= served.names()
    assert len(DEFAULT_KINDS) >= len(KINDS) + 12
