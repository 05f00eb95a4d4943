"""The resource kinds a cluster backend serves: names, scope and whether they have a status subresource.

The embedded store (`cdi.embedded.store`) consults this registry on every call to know whether a kind
is namespaced and how `update`/`update_status` treat it; the CLI resolves what a user types ("dv",
"pvc", "storageclasses", "datavolume.cdi.kubevirt.io") into a kind with `resolve`. Kubernetes' own
kinds are listed here with the scope and subresources the real API server gives them; CDI's kinds are
derived from `cdi.api.kinds.KINDS`, which stays their single source of truth.

Objects are stored per API group, not per version: `cdi.kubevirt.io/v1alpha1` CDI and
`cdi.kubevirt.io/v1beta1` CDI are the same object, as on a real API server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cdi.api.kinds import KINDS, KindInfo
from cdi.cluster.errors import NotFound


class UnknownKind(NotFound):
    """The backend does not serve this kind (kubectl: "the server doesn't have a resource type")."""


@dataclass(frozen=True)
class ResourceKind:
    """One kind as a backend serves it."""

    api_version: str  # the preferred apiVersion, e.g. "v1" or "cdi.kubevirt.io/v1beta1"
    kind: str
    plural: str
    namespaced: bool
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()
    other_versions: tuple[str, ...] = ()  # further served versions of the same group ("v1alpha1")
    create_only: bool = False  # a review: `create` answers with the filled status and stores nothing

    @property
    def group(self) -> str:
        """The API group; "" for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def api_versions(self) -> tuple[str, ...]:
        prefix = f"{self.group}/" if self.group else ""
        return (self.api_version, *(prefix + version for version in self.other_versions))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """The qualified resource name as in error messages: "datavolumes.cdi.kubevirt.io", "pods"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def names(self) -> set[str]:
        """Every word a user may type for this kind, lower case."""
        plain = {self.singular, self.plural, *self.short_names}
        if not self.group:
            return plain
        return plain | {f"{self.singular}.{self.group}", f"{self.plural}.{self.group}"}


def from_kind_info(info: KindInfo) -> ResourceKind:
    """The served kind for one entry of CDI's API table."""
    return ResourceKind(
        api_version=info.api_version, kind=info.kind, plural=info.plural, namespaced=info.namespaced,
        status_subresource=info.status_subresource, short_names=info.short_names,
        other_versions=info.versions[1:], create_only=info.create_only,
    )


# Kubernetes' scope and subresource facts, as `kubectl api-resources` reports them.
KUBERNETES_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("v1", "Namespace", "namespaces", False, True, ("ns",)),
    ResourceKind("v1", "Node", "nodes", False, True, ("no",)),
    ResourceKind("v1", "Pod", "pods", True, True, ("po",)),
    ResourceKind("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, True, ("pvc",)),
    ResourceKind("v1", "PersistentVolume", "persistentvolumes", False, True, ("pv",)),
    ResourceKind("v1", "Service", "services", True, True, ("svc",)),
    ResourceKind("v1", "Secret", "secrets", True),
    ResourceKind("v1", "ConfigMap", "configmaps", True, False, ("cm",)),
    ResourceKind("v1", "Event", "events", True, False, ("ev",)),
    ResourceKind("storage.k8s.io/v1", "StorageClass", "storageclasses", False, False, ("sc",)),
    ResourceKind("storage.k8s.io/v1", "CSIDriver", "csidrivers", False),
    ResourceKind("snapshot.storage.k8s.io/v1", "VolumeSnapshot", "volumesnapshots", True, True, ("vs",)),
    ResourceKind("snapshot.storage.k8s.io/v1", "VolumeSnapshotContent", "volumesnapshotcontents", False, True,
                 ("vsc", "vscs")),
    ResourceKind("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "volumesnapshotclasses", False, False,
                 ("vsclass", "vsclasses")),
    ResourceKind("coordination.k8s.io/v1", "Lease", "leases", True),
    ResourceKind("authorization.k8s.io/v1", "SubjectAccessReview", "subjectaccessreviews", False,
                 create_only=True),
    ResourceKind("authentication.k8s.io/v1", "TokenReview", "tokenreviews", False, create_only=True),
    ResourceKind("v1", "Binding", "bindings", True, create_only=True),  # a scheduler assigns a pod to a node
)


class KindRegistry:
    """The kinds one backend serves, looked up by (apiVersion, kind) or by a user's word."""

    def __init__(self, kinds: Iterable[ResourceKind]) -> None:
        self._kinds = tuple(kinds)
        self._by_key: dict[tuple[str, str], ResourceKind] = {}
        self._by_word: dict[str, ResourceKind] = {}
        self._by_group = {(kind.group, kind.kind): kind for kind in self._kinds}
        for kind in self._kinds:
            for api_version in kind.api_versions:
                self._by_key[(api_version, kind.kind)] = kind
            for word in sorted(kind.names()):
                self._by_word.setdefault(word, kind)  # the first kind listed keeps a shared short name

    def __iter__(self) -> Iterator[ResourceKind]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def lookup(self, api_version: str, kind: str) -> ResourceKind:
        """The kind served as `api_version`/`kind`; raises `UnknownKind`."""
        found = self._by_key.get((api_version, kind))
        if found is None:
            raise UnknownKind(f'no matches for kind "{kind}" in version "{api_version}"')
        return found

    def in_group(self, group: str, kind: str) -> ResourceKind | None:
        """The kind named `kind` in API `group` ("" for core), whatever the version, or None."""
        return self._by_group.get((group, kind))

    def resolve(self, word: str) -> ResourceKind:
        """The kind a user means by `word` ("dv", "PVC", "storageclasses", "cdi.cdi.kubevirt.io")."""
        found = self._by_word.get(word.strip().lower())
        if found is None:
            raise UnknownKind(f'the server doesn\'t have a resource type "{word}"')
        return found


DEFAULT_KINDS = KindRegistry((*KUBERNETES_KINDS, *(from_kind_info(info) for info in KINDS.values())))


def lookup(api_version: str, kind: str) -> ResourceKind:
    """`DEFAULT_KINDS.lookup`: the kind served as `api_version`/`kind`, or `UnknownKind`."""
    return DEFAULT_KINDS.lookup(api_version, kind)


def resolve(word: str) -> ResourceKind:
    """`DEFAULT_KINDS.resolve`: the kind a user means by `word`, or `UnknownKind`."""
    return DEFAULT_KINDS.resolve(word)
