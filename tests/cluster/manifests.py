"""Small manifest builders shared by the cluster tests."""

from __future__ import annotations

from typing import Any

from cdi.cluster.protocol import Object


def configmap(name: str, namespace: str = "default", **fields: Any) -> Object:
    """A ConfigMap manifest; labels, annotations, finalizers, ownerReferences and generateName go to
    metadata, other keyword arguments become top-level fields."""
    meta: Object = {"name": name, "namespace": namespace}
    for key in ("labels", "annotations", "finalizers", "ownerReferences", "generateName"):
        if key in fields:
            meta[key] = fields.pop(key)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **fields}


def datavolume(name: str, namespace: str = "default", size: str = "1Gi", **meta: Any) -> Object:
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": size}}}},
    }


def storageprofile(name: str, **spec: Any) -> Object:
    """A StorageProfile: cluster-scoped, with a mutable spec and a status subresource."""
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile", "metadata": {"name": name},
            "spec": spec}


def owner_ref(owner: Object) -> Object:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"]}
