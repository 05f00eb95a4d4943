"""Applying rendered documents to a cluster with server-side apply, as `kubectl apply --server-side` does.

Each document is sent whole as an apply patch owned by the `cdi-manifests` field manager with
`force` (an install owns the fields it renders, whoever set them before): objects are created when
missing and changed only where they differ, so applying the same documents twice writes nothing.
Used by the Kubernetes tests; the CLI only prints (`cdi manifests`). The cluster must know the
install's kinds (`cdi.install.objects.install_kinds()` for `cdi.kube.connect`).
"""

from __future__ import annotations

from collections.abc import Iterable

from cdi.cluster.protocol import Cluster, Object
from cdi.install.objects import MANAGER


async def apply_documents(cluster: Cluster, documents: Iterable[Object], *,
                          field_manager: str = MANAGER) -> list[Object]:
    """Apply each document in order; returns the objects as stored."""
    applied = []
    for doc in documents:
        meta = doc["metadata"]
        applied.append(await cluster.patch(doc["apiVersion"], doc["kind"], meta["name"], doc,
                                           meta.get("namespace"), patch_type="apply", field_manager=field_manager,
                                           force=True))
    return applied
