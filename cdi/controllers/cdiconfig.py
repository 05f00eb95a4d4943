"""The CDIConfig controller: keeps the singleton CDIConfig `config` and computes its status — filesystem
overhead for every StorageClass, the effective scratch-space class, the preallocation default, default
worker-pod resources, import proxy and the upload proxy URL — from its spec and the classes that exist.
Other controllers read only the status. CDIConfig has no status subresource upstream, so the whole
object is updated."""

from __future__ import annotations

from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import APP_NAME, LABEL_APP
from cdi.controllers.meta import name_of
from cdi.runtime.types import DONE, ControllerSpec, Key, Result, Watch

CONFIG_NAME = "config"
DEFAULT_OVERHEAD = "0.06"
DEFAULT_POD_RESOURCES = {"limits": {"cpu": "750m", "memory": "600M"}, "requests": {"cpu": "100m", "memory": "60M"}}


def desired_status(spec: dict[str, Any], storage_classes: list[Object], upload_proxy_url: str | None,
                   upload_proxy_ca: str | None = None) -> dict[str, Any]:
    """Pure: the CDIConfig status for a spec and the StorageClasses that exist."""
    overhead_spec = spec.get("filesystemOverhead") or {}
    global_overhead = str(overhead_spec.get("global") or DEFAULT_OVERHEAD)
    per_class = overhead_spec.get("storageClass") or {}
    names = sorted(name_of(sc) for sc in storage_classes)
    resources = {kind: {**DEFAULT_POD_RESOURCES[kind], **((spec.get("podResourceRequirements") or {}).get(kind) or {})}
                 for kind in ("limits", "requests")}
    scratch = spec.get("scratchSpaceStorageClass") or ""
    status: dict[str, Any] = {
        "filesystemOverhead": {"global": global_overhead,
                               "storageClass": {n: str(per_class.get(n, global_overhead)) for n in names}},
        "scratchSpaceStorageClass": scratch if scratch in names else "",
        "defaultPodResourceRequirements": resources,
        "preallocation": bool(spec.get("preallocation", False)),
    }
    if url := spec.get("uploadProxyURLOverride") or upload_proxy_url:
        status["uploadProxyURL"] = url
    if upload_proxy_ca and not spec.get("uploadProxyURLOverride"):
        status["uploadProxyCA"] = upload_proxy_ca
    if spec.get("importProxy"):
        status["importProxy"] = spec["importProxy"]
    if spec.get("imagePullSecrets"):
        status["imagePullSecrets"] = spec["imagePullSecrets"]
    return status


async def ensure_config(cluster: Cluster) -> Object:
    """Create the singleton if it does not exist (the operator does this upstream)."""
    try:
        return await cluster.create({"apiVersion": CDI_API_VERSION, "kind": "CDIConfig",
                                     "metadata": {"name": CONFIG_NAME, "labels": {LABEL_APP: APP_NAME}},
                                     "spec": {}})
    except AlreadyExists:
        return await cluster.get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME)


class CDIConfigReconciler:
    def __init__(self, cluster: Cluster, upload_proxy_url: str | None = None,
                 upload_proxy_ca: str | None = None) -> None:
        self._cluster = cluster
        self._upload_proxy_url = upload_proxy_url
        self._upload_proxy_ca = upload_proxy_ca

    async def reconcile(self, key: Key) -> Result:
        if key.name != CONFIG_NAME:
            return DONE
        try:
            config = await self._cluster.get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME)
        except NotFound:
            config = await ensure_config(self._cluster)
        classes = (await self._cluster.list("storage.k8s.io/v1", "StorageClass")).items
        status = desired_status(config.get("spec") or {}, classes, self._upload_proxy_url, self._upload_proxy_ca)
        if config.get("status") != status:
            await self._cluster.update({**config, "status": status})
        return DONE


def controllers(cluster: Cluster, upload_proxy_url: str | None = None,
                upload_proxy_ca: str | None = None) -> list[ControllerSpec]:
    to_config = Watch("storage.k8s.io/v1", "StorageClass", lambda _obj: [Key("", CONFIG_NAME)])
    return [ControllerSpec("cdiconfig-controller", CDI_API_VERSION, "CDIConfig",
                           CDIConfigReconciler(cluster, upload_proxy_url, upload_proxy_ca), watches=[to_config],
                           workers=1)]
