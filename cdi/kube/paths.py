"""URL paths of the Kubernetes API for one kind: collection, object, subresource; pure.

Core kinds live under `/api/v1`, every other group under `/apis/<group>/<version>`; namespaced kinds
add `/namespaces/<ns>` (omitted to list across namespaces). Names and namespaces are URL-quoted.
"""

from __future__ import annotations

from urllib.parse import quote

from cdi.cluster.kinds import ResourceKind


def group_version_path(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def collection_path(kind: ResourceKind, api_version: str, namespace: str | None) -> str:
    base = group_version_path(api_version)
    if kind.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    return f"{base}/{kind.plural}"


def object_path(kind: ResourceKind, api_version: str, name: str, namespace: str | None,
                subresource: str = "") -> str:
    path = f"{collection_path(kind, api_version, namespace)}/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path
