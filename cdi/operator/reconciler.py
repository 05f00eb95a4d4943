"""The operator's reconciler: observe the CDI CR and what it governs, plan (`cdi.operator.plan`), apply.

Keyed by the CR's name (cluster-scoped). Observation reads the server, not the informer caches (the
operator's reads are few, and a decision such as "is `cdi-config` mine" must not lag its own write):
the CR, `cdi-config` in the install namespace, whether any DataVolume exists, the CDIConfig singleton, and
the installer's view (`cdi.operator.installer`). Each action of the plan is applied in order and is
idempotent, so a reconcile that fails half-way is simply retried.

`spec.config` is written into CDIConfig here, whatever the installer (upstream's config authority: the CR is
annotated once, and an existing CDIConfig spec is first copied into an empty `spec.config`). Worker pods
are removed by label (`cdi.kubevirt.io in (importer, cdi-upload-server, cdi-clone-source)`), as upstream's
`deleteWorkerResources`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import ANN_CONFIG_AUTHORITY, APP_NAME, LABEL_APP, LABEL_COMPONENT, Component
from cdi.operator import contract as c
from cdi.operator import plan as p
from cdi.operator.installer import Installer, InstallState
from cdi.runtime.cachedclient import CachedCluster
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

log = logging.getLogger(__name__)
CONFIG_NAME = "config"  # the CDIConfig singleton
WORKER_SELECTOR = (f"{LABEL_COMPONENT} in ({Component.IMPORTER.value},{Component.UPLOAD_SERVER.value},"
                   f"{Component.CLONE_SOURCE.value})")


def owner_ref(cr: Mapping[str, Any]) -> Object:
    """The controller ownerReference naming the CR."""
    meta = cr["metadata"]
    return {"apiVersion": CDI_API_VERSION, "kind": "CDI", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("controller") and ref.get("uid") == uid
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def cdi_owner_keys(obj: Object) -> Iterable[Key]:
    """The CDI CRs an object names as owners (cluster-scoped: no namespace in the key)."""
    return [Key("", str(ref["name"])) for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("kind") == "CDI"]


class OperatorReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, installer: Installer, *, namespace: str,
                 version: str, resync: float | None = None, events: EventSink | None = None) -> None:
        self._cluster = cluster.direct if isinstance(cluster, CachedCluster) else cluster
        self._events = events or DirectEvents(self._cluster, clock.now)
        self._clock, self._installer = clock, installer
        self._namespace, self._version = namespace, version
        # Reconcile a CR again after this long even if nothing changed (upstream's perishables sync): drift is
        # reverted without waiting for an event. Sooner when a certificate falls due before (`plan.wake_after`).
        self._resync = resync

    async def reconcile(self, key: Key) -> Result:
        try:
            cr = await self._cluster.get(CDI_API_VERSION, "CDI", key.name)
        except NotFound:
            return DONE
        observed, renew_at = await self._observe(cr)
        todo = p.plan(observed)
        for action in todo.actions:
            cr = await self._apply(action, cr)
        if observed.standing is not p.Standing.ACTIVE or observed.cr["metadata"].get("deletionTimestamp"):
            return Result(todo.requeue_after)
        renew_in = (renew_at - self._clock.now()).total_seconds() if renew_at is not None else None
        return Result(p.wake_after(todo.requeue_after, self._resync, renew_in))

    async def observe(self, cr: Object) -> p.Observed:
        return (await self._observe(cr))[0]

    async def _observe(self, cr: Object) -> tuple[p.Observed, datetime | None]:
        """What the planner decides on, and when the installation's first certificate falls due."""
        standing = await self._standing(cr)
        deleting = bool(cr["metadata"].get("deletionTimestamp"))
        state = InstallState()
        if standing is p.Standing.ACTIVE and not deleting:
            state = await self._installer.observe(cr, self._version)
        config = await self._config()
        annotations = cr["metadata"].get("annotations") or {}
        return p.Observed(
            cr=cr, standing=standing, version=self._version, now=_timestamp(self._clock),
            components=state.components, problems=state.problems, stale=state.stale,
            workloads_exist=bool((await self._cluster.list(CDI_API_VERSION, "DataVolume", limit=1)).items),
            config_in_sync=config is not None and (config.get("spec") or {}) == _desired_config(cr),
            has_config_authority=ANN_CONFIG_AUTHORITY in annotations), state.renew_at

    async def _standing(self, cr: Object) -> p.Standing:
        try:
            config_map = await self._cluster.get("v1", "ConfigMap", c.CONFIG_MAP, self._namespace)
        except NotFound:
            return p.Standing.FREE
        if controlled_by(config_map, cr["metadata"]["uid"]):
            return p.Standing.ACTIVE
        if config_map["metadata"].get("deletionTimestamp"):
            return p.Standing.RELEASING
        for ref in config_map["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "CDI":
                try:
                    owner = await self._cluster.get(CDI_API_VERSION, "CDI", ref["name"])
                except NotFound:
                    return p.Standing.RELEASING  # garbage collection will remove it
                if owner["metadata"]["uid"] != ref.get("uid") or owner["metadata"].get("deletionTimestamp"):
                    return p.Standing.RELEASING
        return p.Standing.UNWANTED

    async def _config(self) -> Object | None:
        try:
            return await self._cluster.get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME)
        except NotFound:
            return None

    async def _apply(self, action: p.Action, cr: Object) -> Object:
        name = cr["metadata"]["name"]
        match action:
            case p.ClaimConfigMap():
                await self._cluster.create({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": c.CONFIG_MAP, "namespace": self._namespace,
                                 "labels": {LABEL_APP: APP_NAME}, "ownerReferences": [owner_ref(cr)]}})
            case p.AddFinalizer():
                finalizers = [*(cr["metadata"].get("finalizers") or []), c.FINALIZER]
                cr = await self._patch_cr(name, {"metadata": {"finalizers": list(dict.fromkeys(finalizers))}})
            case p.TakeConfigAuthority():
                cr = await self._take_config_authority(cr)
            case p.Install():
                await self._installer.install(cr, self._version)
            case p.SyncConfig():
                await self._sync_config(cr)
            case p.DeleteStale(objects=objects):
                await self._installer.delete_stale(objects)
            case p.WriteStatus(status=status):
                cr = await self._patch_cr(name, {"status": status})
            case p.RemoveWorkloads():
                await self._remove_workloads()
            case p.Uninstall():
                await self._installer.uninstall(cr)
            case p.RemoveFinalizer(status=status):
                finalizers = [f for f in cr["metadata"].get("finalizers") or [] if f != c.FINALIZER]
                cr = await self._patch_cr(name, {"metadata": {"finalizers": finalizers or None}, "status": status})
            case p.RecordEvent(type=type_, reason=reason, message=message):
                await self._events.record(cr, type_, reason, message, component=c.COMPONENT)
        return cr

    async def _patch_cr(self, name: str, patch: Object) -> Object:
        # The CDI kind has no status subresource (as upstream's CRD): status travels with the object.
        return await self._cluster.patch(CDI_API_VERSION, "CDI", name, patch, field_manager=c.FIELD_MANAGER)

    async def _take_config_authority(self, cr: Object) -> Object:
        patch: Object = {"metadata": {"annotations": {ANN_CONFIG_AUTHORITY: ""}}}
        config = await self._config()
        if (cr.get("spec") or {}).get("config") is None and config is not None and config.get("spec"):
            patch["spec"] = {"config": config["spec"]}
        return await self._patch_cr(cr["metadata"]["name"], patch)

    async def _sync_config(self, cr: Object) -> None:
        desired = _desired_config(cr)
        try:
            await self._cluster.create({"apiVersion": CDI_API_VERSION, "kind": "CDIConfig",
                                        "metadata": {"name": CONFIG_NAME, "labels": {LABEL_APP: APP_NAME}},
                                        "spec": desired}, field_manager=c.FIELD_MANAGER)
        except AlreadyExists:
            # Replace the whole spec: a field the CR no longer sets must go too.
            await self._cluster.patch(CDI_API_VERSION, "CDIConfig", CONFIG_NAME,
                                      [{"op": "add", "path": "/spec", "value": desired}], patch_type="json",
                                      field_manager=c.FIELD_MANAGER)

    async def _remove_workloads(self) -> None:
        for dv in (await self._cluster.list(CDI_API_VERSION, "DataVolume")).items:
            await self._delete(CDI_API_VERSION, "DataVolume", dv)
        for kind in ("Pod", "Service"):
            for obj in (await self._cluster.list("v1", kind, label_selector=WORKER_SELECTOR)).items:
                await self._delete("v1", kind, obj)

    async def _delete(self, api_version: str, kind: str, obj: Object) -> None:
        meta = obj["metadata"]
        try:
            await self._cluster.delete(api_version, kind, meta["name"], meta.get("namespace"))
        except NotFound:
            pass


def _desired_config(cr: Mapping[str, Any]) -> Object:
    return dict((cr.get("spec") or {}).get("config") or {})


def _timestamp(clock: Clock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def controllers(cluster: Cluster, clock: Clock, installer: Installer, *, namespace: str,
                version: str, resync: float | None = None, events: EventSink | None = None) -> list[ControllerSpec]:
    """The operator's one controller: CDI CRs, woken also by `cdi-config` and by what the installer watches."""
    reconciler = OperatorReconciler(cluster, clock, installer, namespace=namespace, version=version, resync=resync,
                                    events=events)
    watches = [Watch("v1", "ConfigMap", cdi_owner_keys, namespace=namespace), *installer.watches()]
    return [ControllerSpec("cdi-operator", CDI_API_VERSION, "CDI", reconciler, watches=watches, workers=1)]
