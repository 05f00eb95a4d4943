"""What the scale benchmark's controller process measures about itself: API requests and reconcile times.

`CountingCluster` wraps the controllers' `Cluster` and counts every verb call by (verb, kind): on the
embedded store each call is one transaction, the nearest thing to a request. `CountingTransport` is the
Kubernetes backend's transport counting the HTTP requests it really sends, split into watches and the
rest, and timing how long each request waited for the client-side rate limit (`TimedBucket`).
`timed` wraps a `ControllerSpec`'s reconciler so that every reconcile's wall time (and the part of it
spent throttled) lands in `ReconcileStats`. `bench.scale_controller` builds these; `bench.scale` reads
what they report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio.client import Configuration

from cdi.cluster.protocol import Cluster, DeleteOptions, Object, ObjectList, PatchType, WatchEvent
from cdi.kube.transport import TokenBucket, Transport
from cdi.runtime.types import ControllerSpec, Key, Reconciler, Result

T = TypeVar("T")


@dataclasses.dataclass
class _Spent:
    """Where the current reconcile's time went, kept with the task running it: an informer that a
    reconcile starts lazily copies its context, and that informer's requests are not the reconcile's."""

    task: asyncio.Task[Any] | None
    throttled: float = 0.0  # waiting for the client-side rate limiter (Kubernetes)
    api: float = 0.0  # in API calls, throttling included (uncached reads and writes)


_SPENT: ContextVar[_Spent | None] = ContextVar("bench_spent", default=None)


def _current() -> _Spent | None:
    spent = _SPENT.get()
    return spent if spent is not None and spent.task is asyncio.current_task() else None


class CountingCluster:
    """A `Cluster` that counts each call by (verb, kind), adds its time to the current reconcile's, and
    passes it on."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.calls: Counter[tuple[str, str]] = Counter()

    def _count(self, verb: str, kind: str) -> None:
        self.calls[(verb, kind)] += 1

    async def _call(self, verb: str, kind: str, call: Awaitable[T]) -> T:
        self._count(verb, kind)
        started = time.monotonic()
        try:
            return await call
        finally:
            spent = _current()
            if spent is not None:
                spent.api += time.monotonic() - started

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object:
        return await self._call("get", kind, self._cluster.get(api_version, kind, name, namespace))

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None, *,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> ObjectList:
        return await self._call("list", kind, self._cluster.list(
            api_version, kind, namespace, label_selector, field_selector=field_selector, limit=limit,
            continue_token=continue_token))

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        self._count("watch", kind)
        return self._cluster.watch(api_version, kind, resource_version=resource_version, namespace=namespace,
                                   label_selector=label_selector, field_selector=field_selector,
                                   allow_bookmarks=allow_bookmarks)

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._call("create", str(obj.get("kind")), self._cluster.create(obj, field_manager=field_manager))

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._call("update", str(obj.get("kind")), self._cluster.update(obj, field_manager=field_manager))

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._call("update_status", str(obj.get("kind")),
                                self._cluster.update_status(obj, field_manager=field_manager))

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object:
        return await self._call("patch", kind, self._cluster.patch(
            api_version, kind, name, patch, namespace, patch_type=patch_type, field_manager=field_manager,
            force=force))

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object:
        return await self._call("patch_status", kind, self._cluster.patch_status(
            api_version, kind, name, patch, namespace, patch_type=patch_type, field_manager=field_manager,
            force=force))

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None:
        await self._call("delete", kind, self._cluster.delete(api_version, kind, name, namespace, options=options))

    async def pod_logs(self, name: str, namespace: str, *, container: str | None = None, previous: bool = False,
                       tail_lines: int | None = None) -> str:
        return await self._call("logs", "Pod", self._cluster.pod_logs(
            name, namespace, container=container, previous=previous, tail_lines=tail_lines))

    async def served(self, api_version: str, kind: str) -> bool:
        return await self._call("served", kind, self._cluster.served(api_version, kind))


class TimedBucket(TokenBucket):
    """The transport's rate limiter, adding each wait to the current reconcile's throttled time."""

    async def take(self) -> None:
        started = time.monotonic()
        await super().take()
        spent = _current()
        if spent is not None:
            spent.throttled += time.monotonic() - started


class CountingTransport(Transport):
    """The Kubernetes transport, counting requests sent: watches apart from everything else."""

    def __init__(self, configuration: Configuration, *, qps: float, burst: int) -> None:
        super().__init__(configuration, qps=qps, burst=burst)
        self._bucket = TimedBucket(qps, burst)
        self.watches = 0
        self.by_method: Counter[str] = Counter()

    async def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                   content_type: str = "application/json", timeout: float | None = 60.0) -> aiohttp.ClientResponse:
        if (query or {}).get("watch"):
            self.watches += 1
        else:
            self.by_method[method] += 1
        return await super().open(method, path, query=query, body=body, content_type=content_type, timeout=timeout)


@dataclasses.dataclass
class Slow:
    seconds: float
    throttled: float
    api: float
    key: str


class ReconcileStats:
    """Every reconcile's wall time for one controller, and the slowest few with their keys."""

    KEEP = 5

    def __init__(self) -> None:
        self.durations = array("d")
        self.throttled = array("d")
        self.elsewhere = array("d")  # neither in API calls nor throttled: own code, and waiting for the loop
        self.slowest: list[Slow] = []
        self.failures = 0

    def restart(self) -> dict[str, Any]:
        """The summary so far (start-up's), and measure afresh from here."""
        summary = self.summary()
        self.durations, self.throttled, self.elsewhere = array("d"), array("d"), array("d")
        self.slowest, self.failures = [], 0
        return summary

    def add(self, key: Key, seconds: float, spent: _Spent) -> None:
        self.durations.append(seconds)
        self.throttled.append(spent.throttled)
        self.elsewhere.append(seconds - spent.api)
        if len(self.slowest) < self.KEEP or seconds > self.slowest[-1].seconds:
            self.slowest = sorted([*self.slowest, Slow(seconds, spent.throttled, spent.api, str(key))],
                                  key=lambda s: -s.seconds)[:self.KEEP]

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        unthrottled = sorted(d - t for d, t in zip(self.durations, self.throttled, strict=True))
        return {"reconciles": len(ordered), "failures": self.failures,
                "max": ordered[-1] if ordered else 0.0, "p99": percentile(ordered, 0.99),
                "p50": percentile(ordered, 0.50), "over_100ms": sum(1 for d in ordered if d > 0.1),
                "max_unthrottled": unthrottled[-1] if unthrottled else 0.0,
                "p99_unthrottled": percentile(unthrottled, 0.99),
                "max_outside_api": max(self.elsewhere, default=0.0),
                "slowest": [dataclasses.asdict(s) for s in self.slowest]}


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class TimedReconciler:
    """Times each reconcile of `inner` (a failing one too: the runtime retries it, and it cost the time)."""

    def __init__(self, inner: Reconciler, stats: ReconcileStats) -> None:
        self._inner, self._stats = inner, stats

    async def reconcile(self, key: Key) -> Result:
        spent = _Spent(asyncio.current_task())
        token = _SPENT.set(spent)
        started = time.monotonic()
        try:
            return await self._inner.reconcile(key)
        except Exception:
            self._stats.failures += 1
            raise
        finally:
            self._stats.add(key, time.monotonic() - started, spent)
            _SPENT.reset(token)


def timed(spec: ControllerSpec, stats: ReconcileStats) -> ControllerSpec:
    return dataclasses.replace(spec, reconciler=TimedReconciler(spec.reconciler, stats))
