"""The manager: runs every controller of a process over shared informers, under a process lock.

`cdi serve` (and the Kubernetes deployment's entrypoint) builds one `Manager` on a `Cluster`, hands it
each `ControllerSpec` with `add`, gives reconcilers cached readers with `reader`, and awaits
`run(stop)`. `run` first takes the single-active-process lock when a `lock_path` is given
(`cdi.runtime.lock`: a second process waits as a hot standby and takes over when the first exits),
then starts every informer (`cdi.runtime.informer`), waits until all have listed, and starts the
controllers' workers (`cdi.runtime.controller`). When `stop` is set it shuts down in order: queues
stop handing out keys, in-flight reconciles get `shutdown_timeout` seconds before being cancelled,
Events the controllers recorded through `events()` are written (for up to `shutdown_timeout` seconds), informers
stop, the lock is released. Nothing it started outlives `run`. Given a `RuntimeMetrics`
(`cdi.runtime.instrumentation`), every controller's queue and reconciles report to it under the
controller's name.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import Awaitable
from pathlib import Path

from cdi.api import build_models
from cdi.cluster.protocol import Cluster
from cdi.runtime.cachedclient import CachedCluster
from cdi.runtime.controller import Controller
from cdi.runtime.informer import Informer, SharedInformers
from cdi.runtime.instrumentation import RuntimeMetrics
from cdi.runtime.lease import LeaderLock
from cdi.runtime.lock import ProcessLock
from cdi.runtime.queue import WorkQueue
from cdi.runtime.recorder import QueuedEvents
from cdi.runtime.types import Clock, ControllerSpec, SystemClock

logger = logging.getLogger(__name__)
UNCACHED_KINDS = frozenset({"Secret"})


class Manager:
    """Owns the informers, queues and workers of one process's controllers."""

    def __init__(self, cluster: Cluster, *, clock: Clock | None = None, lock_path: Path | None = None,
                 shutdown_timeout: float = 30.0, lock_poll_interval: float = 1.0,
                 leader_lock: LeaderLock | None = None, metrics: RuntimeMetrics | None = None,
                 freeze_heap: bool = False) -> None:
        self._clock = clock or SystemClock()
        self._metrics = metrics
        self._cluster = cluster
        self._informers = SharedInformers(cluster)
        self._controllers: list[Controller] = []
        self._lock: LeaderLock | None = leader_lock or (
            ProcessLock(lock_path, poll_interval=lock_poll_interval) if lock_path is not None else None)
        self._shutdown_timeout = shutdown_timeout
        # A long-running process (`cdi serve`, `cdi controller`): once the caches are filled, what is on the
        # heap (modules, the first lists) is left out of the cyclic garbage collector's full passes, which
        # stop the event loop for as long as they scan. Cached objects are JSON trees, freed by reference
        # counting without it. At 1,000 DataVolumes the longest pass went from 110 ms to 42 ms. The API
        # models are built before that (they are built on first use otherwise: a stall of ~0.1 s at the
        # first DataVolume), and so are frozen with the rest.
        self._freeze_heap = freeze_heap
        self._events = QueuedEvents(self.client(), self._clock.now)
        self._ran = False
        self._active = False

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers)

    @property
    def active(self) -> bool:
        """True while this process holds the lock and its controllers are running."""
        return self._active

    def client(self) -> CachedCluster:
        """A `Cluster` for reconcilers: reads from this manager's informer caches, writes to the cluster.

        Secrets are read from the server, not cached: a cluster-wide Secret cache would need list/watch on
        every Secret of the cluster, which the controller's least-privilege role does not grant (as
        controller-runtime users commonly exclude them too)."""
        return CachedCluster(self._cluster, self._informers, uncached=UNCACHED_KINDS)

    def events(self) -> QueuedEvents:
        """The recorder for this manager's controllers (controller-runtime's `GetEventRecorderFor`): a
        reconcile's Events are written by the recorder's own task, not while the reconcile waits."""
        return self._events

    def reader(self, api_version: str, kind: str, namespace: str | None = None) -> Informer:
        """The shared cache of a kind (an `Informer`, which is a `Reader`); filled once `run` syncs it."""
        return self._informers.informer(api_version, kind, namespace)

    def add(self, spec: ControllerSpec) -> Controller:
        """Register a controller; all must be added before `run`."""
        if self._ran:
            raise RuntimeError(f"controller {spec.name!r} must be added before the manager runs")
        if any(existing.name == spec.name for existing in self._controllers):
            raise ValueError(f"a controller named {spec.name!r} is already registered")
        queue = WorkQueue(self._clock)
        if self._metrics is not None:
            queue.instrument(self._metrics.workqueue(spec.name, queue.in_flight))
        controller = Controller(spec, self._informers, queue, self._clock,
                                self._metrics.reconciles(spec.name) if self._metrics is not None else None)
        self._controllers.append(controller)
        return controller

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down gracefully; returns once everything has stopped."""
        if self._ran:
            raise RuntimeError("a manager runs once; build a new one to run again")
        self._ran = True
        if self._lock is not None and not await self._lock.acquire(stop):
            return
        try:
            await self._serve(stop)
        finally:
            await self._shut_down()

    async def _serve(self, stop: asyncio.Event) -> None:
        self._informers.start()
        if not await _unless_stopped(self._informers.wait_synced(), stop):
            return
        if self._freeze_heap:
            build_models()
            gc.collect()
            gc.freeze()
        for controller in self._controllers:
            controller.start()
        self._active = True
        logger.info("started %d controller(s): %s", len(self._controllers),
                    ", ".join(controller.name for controller in self._controllers) or "none")
        lost = getattr(self._lock, "lost", None)
        await _first(stop, lost if isinstance(lost, asyncio.Event) else None)
        logger.info("stopping controllers")

    async def _shut_down(self) -> None:
        self._active = False
        try:
            for controller in self._controllers:
                controller.queue.shutdown()  # all stop taking keys before any is waited for
            await asyncio.gather(*(controller.stop(self._shutdown_timeout) for controller in self._controllers))
            await self._events.stop(self._shutdown_timeout)
            await self._informers.stop()
        finally:
            if self._lock is not None:
                released = self._lock.release()
                if inspect.isawaitable(released):
                    await released


async def _first(stop: asyncio.Event, lost: asyncio.Event | None) -> None:
    """Wait until `stop` is set or, when there is one, the leader lock is `lost`."""
    if lost is None:
        await stop.wait()
        return
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if lost.is_set():
        logger.error("the leader lock was lost: stopping so that the new leader reconciles alone")


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await `work` unless `stop` is set first; True if `work` finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopped):
            pending.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True
