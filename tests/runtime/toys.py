"""A toy controller for the runtime tests: mirror each ConfigMap's `spec.value` into an owned Secret.

`Mirror` is deliberately level-triggered: it reads the ConfigMap from the manager's cache and the
Secret from the cluster on every call, whatever woke it. Knobs let tests hold a reconcile open
(`gate`), make the first calls fail (`failures`) or ask to be requeued (`requeue_after`); it records
what it saw so tests can check ordering and that a key never runs twice at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.runtime.manager import Manager
from cdi.runtime.types import ControllerSpec, Key, Reader, Result, Watch, owner_keys


def configmap(name: str, value: str, namespace: str = "default", **meta: Any) -> Object:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": {"value": value}}


class Mirror:
    """Reconciles ConfigMap `key` into Secret `key` with `data.value` = the ConfigMap's `spec.value`."""

    def __init__(self, cluster: Cluster, configmaps: Reader, *, failures: int = 0,
                 requeue_after: float | None = None, gate: asyncio.Event | None = None) -> None:
        self._cluster, self._configmaps = cluster, configmaps
        self.failures, self.requeue_after, self.gate = failures, requeue_after, gate
        self.calls: list[Key] = []
        self.seen: list[str] = []  # spec.value as each call read it
        self.entered = asyncio.Event()
        self.finished = 0
        self.overlaps = 0
        self._active: set[Key] = set()

    async def reconcile(self, key: Key) -> Result:
        if key in self._active:
            self.overlaps += 1
        self._active.add(key)
        try:
            return await self._reconcile(key)
        finally:
            self._active.discard(key)

    async def _reconcile(self, key: Key) -> Result:
        self.calls.append(key)
        self.entered.set()
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"injected failure {len(self.calls)}")
        source = self._configmaps.get(key)
        if source is None:
            return Result()
        value = str(source["spec"]["value"])
        self.seen.append(value)
        if self.gate is not None:
            await self.gate.wait()
        await self._write(source, value)
        self.finished += 1
        return Result(self.requeue_after)

    async def _write(self, source: Object, value: str) -> None:
        meta = source["metadata"]
        try:
            secret = await self._cluster.get("v1", "Secret", meta["name"], meta["namespace"])
        except NotFound:
            owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"]}
            await self._cluster.create({"apiVersion": "v1", "kind": "Secret", "data": {"value": value},
                                        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                                     "ownerReferences": [owner]}})
            return
        if secret.get("data") != {"value": value}:
            await self._cluster.update(dict(secret, data={"value": value}))


def add_mirror(manager: Manager, cluster: Cluster, *, watch_secrets: bool = True, workers: int = 2,
               predicate: Callable[[Object], bool] | None = None, **knobs: Any) -> Mirror:
    """Register a `Mirror` controller named "mirror" on `manager`."""
    mirror = Mirror(cluster, manager.reader("v1", "ConfigMap"), **knobs)
    watches = (Watch("v1", "Secret", owner_keys("ConfigMap")),) if watch_secrets else ()
    manager.add(ControllerSpec("mirror", "v1", "ConfigMap", mirror, watches, workers, predicate=predicate))
    return mirror


async def secret_value(cluster: Cluster, name: str, namespace: str = "default") -> str | None:
    try:
        secret = await cluster.get("v1", "Secret", name, namespace)
    except NotFound:
        return None
    value = (secret.get("data") or {}).get("value")
    return str(value) if value is not None else None
