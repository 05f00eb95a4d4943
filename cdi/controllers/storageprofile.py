"""The StorageProfile controller: one StorageProfile per StorageClass (same name), whose status says
how CDI should claim storage of that class — claim property sets and clone strategy — from the user's
spec, the class's clone-strategy annotation, or the capabilities table, in that order of precedence.
Keyed by StorageClass name; the DataVolume controllers read the profiles it writes."""

from __future__ import annotations

from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import ANN_CLONE_STRATEGY, ANN_MIN_SUPPORTED_PVC_SIZE, APP_NAME, LABEL_APP
from cdi.controllers.capabilities import UNSUPPORTED_PROVISIONERS, capabilities_for
from cdi.controllers.meta import annotations_of, find_condition, timestamp
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

SC_API = "storage.k8s.io/v1"


def desired_status(storage_class: Object, spec: dict[str, Any], now: str,
                   previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The profile status for a class; pure."""
    provisioner = str(storage_class.get("provisioner", ""))
    caps = capabilities_for(storage_class)
    sets = spec.get("claimPropertySets") or (
        [{"accessModes": [mode], "volumeMode": volume_mode} for mode, volume_mode in caps.claim_property_sets]
        if caps else [])
    # Unset when nothing advises one: the clone planner then defaults to `snapshot`, as upstream's does.
    clone = (spec.get("cloneStrategy") or annotations_of(storage_class).get(ANN_CLONE_STRATEGY)
             or (caps.clone_strategy if caps else None))
    recognized = caps is not None or provisioner in UNSUPPORTED_PROVISIONERS
    status: dict[str, Any] = {
        "storageClass": storage_class["metadata"]["name"],
        "provisioner": provisioner,
        "claimPropertySets": sets,
        "dataImportCronSourceFormat": spec.get("dataImportCronSourceFormat")
        or (caps.data_import_cron_source_format if caps else None) or "pvc",
    }
    if clone:
        status["cloneStrategy"] = clone
    if spec.get("snapshotClass"):
        status["snapshotClass"] = spec["snapshotClass"]
    condition = {"type": "Recognized", "status": "True" if recognized else "False",
                 "reason": "RecognizedProvisioner" if recognized else "UnrecognizedProvisioner",
                 "message": "" if recognized else f"provisioner {provisioner!r} is not in CDI's capabilities table; "
                                                 f"set spec.claimPropertySets on this StorageProfile"}
    old = find_condition(previous or [], "Recognized")
    unchanged = old is not None and all(old.get(k) == condition[k] for k in ("status", "reason", "message"))
    condition["lastTransitionTime"] = old.get("lastTransitionTime", now) if unchanged and old else now
    status["conditions"] = [condition]
    return status


class StorageProfileReconciler:
    def __init__(self, cluster: Cluster, clock: Clock) -> None:
        self._cluster = cluster
        self._clock = clock

    async def reconcile(self, key: Key) -> Result:
        try:
            storage_class = await self._cluster.get(SC_API, "StorageClass", key.name)
        except NotFound:
            try:
                await self._cluster.delete(CDI_API_VERSION, "StorageProfile", key.name)
            except NotFound:
                pass
            return DONE
        profile = await self._ensure_profile(key.name, storage_class)
        status = desired_status(storage_class, profile.get("spec") or {}, timestamp(self._clock.now()),
                                (profile.get("status") or {}).get("conditions"))
        if profile.get("status") != status:
            await self._cluster.update_status({**profile, "status": status})
        return DONE

    async def _ensure_profile(self, name: str, storage_class: Object) -> Object:
        try:
            return await self._cluster.get(CDI_API_VERSION, "StorageProfile", name)
        except NotFound:
            pass
        caps = capabilities_for(storage_class)
        meta: dict[str, Any] = {"name": name, "labels": {LABEL_APP: APP_NAME, "cdi.kubevirt.io": ""}}
        if caps and caps.minimum_pvc_size:
            meta["annotations"] = {ANN_MIN_SUPPORTED_PVC_SIZE: caps.minimum_pvc_size}
        try:
            return await self._cluster.create({"apiVersion": CDI_API_VERSION, "kind": "StorageProfile",
                                               "metadata": meta, "spec": {}})
        except AlreadyExists:
            return await self._cluster.get(CDI_API_VERSION, "StorageProfile", name)


def controllers(cluster: Cluster, clock: Clock) -> list[ControllerSpec]:
    same_name = Watch(CDI_API_VERSION, "StorageProfile", lambda obj: [Key("", obj["metadata"]["name"])])
    return [ControllerSpec("storageprofile-controller", SC_API, "StorageClass",
                           StorageProfileReconciler(cluster, clock), watches=[same_name], workers=1)]
