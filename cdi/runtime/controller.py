"""A controller: informer events in, keys through a work queue, `reconcile(key)` on several workers.

`Controller` wires one `ControllerSpec` (from `cdi.runtime.types`) to the shared informers of
`cdi.runtime.informer`: every change to an object of the primary kind enqueues that object's key
(unless the spec's `predicate` refuses the object: the DataVolume controllers each serve one kind of
source, and at 1,000 DataVolumes the others' reconciles that found nothing to do were most of all),
and every change to an object a `Watch` covers enqueues the keys its `map_to_keys` returns (for a
deletion, computed from the last known object) — with `only_served`, only keys whose cached primary the
predicate accepts. Workers take keys from the `WorkQueue`
(`cdi.runtime.queue`) and call the reconciler. As in controller-runtime, a reconcile that returns
resets the key's backoff and, if it asked for `requeue_after`, parks the key for that long; one that
raises is logged (a line naming the controller and key, the traceback at debug level) and retried
with per-key exponential backoff. The queue guarantees a key is never reconciled twice at once.

Every informer is the kind's one cluster-wide informer, the same the cached client reads through
(`cdi.runtime.cachedclient`); a `Watch`'s namespace and label selector filter the events it maps, as
controller-runtime's predicates do. So when an event wakes a reconcile, the cache it reads already holds
that change (an informer applies an event to its cache before telling its handlers); with a separate,
filtered informer per watch, a reconcile could read the older state and nothing would wake it again.

`cdi.runtime.manager` builds controllers, starts them once their informers have synced, and stops
them gracefully. With a `ReconcileMetrics` (`cdi.runtime.instrumentation`) each reconcile is reported as
controller-runtime counts it: its result (success, error, requeue, requeue_after) and its duration.
"""

from __future__ import annotations

import asyncio
import logging

from cdi.cluster.errors import Conflict
from cdi.cluster.protocol import EventType, Object
from cdi.runtime.informer import Informer, SharedInformers
from cdi.runtime.instrumentation import ReconcileMetrics, reconcile_result
from cdi.runtime.queue import WorkQueue
from cdi.runtime.types import Clock, ControllerSpec, Key, SystemClock, Watch

logger = logging.getLogger(__name__)


class Controller:
    """Runs `spec.reconciler` on `spec.workers` workers for keys its informers enqueue."""

    def __init__(self, spec: ControllerSpec, informers: SharedInformers, queue: WorkQueue | None = None,
                 clock: Clock | None = None, metrics: ReconcileMetrics | None = None) -> None:
        self.spec = spec
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self.queue = queue if queue is not None else WorkQueue(self._clock)
        self._workers: list[asyncio.Task[None]] = []
        primary = informers.informer(spec.api_version, spec.kind)
        primary.add_handler(self._enqueue_own_key)
        self._primary = primary
        self.informers: list[Informer] = [primary]
        for watch in spec.watches:
            informer = informers.informer(watch.api_version, watch.kind)
            informer.add_handler(_MapToKeys(self, watch))
            self.informers.append(informer)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"<Controller {self.name}>"

    def start(self) -> None:
        """Start the workers (the informers are started by their owner)."""
        if not self._workers:
            if self._metrics is not None:
                self._metrics.workers(max(1, self.spec.workers))
            self._workers = [asyncio.create_task(self._work(), name=f"{self.name}-worker-{index}")
                             for index in range(max(1, self.spec.workers))]

    async def stop(self, timeout: float) -> None:
        """Take no new keys, give in-flight reconciles `timeout` seconds to finish, then cancel them."""
        self.queue.shutdown()
        workers, self._workers = self._workers, []
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=timeout)
        for task in pending:
            logger.warning("%s: a reconcile did not finish within %.1fs of shutdown; cancelling it",
                           self.name, timeout)
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self) -> None:
        while (key := await self.queue.get()) is not None:
            try:
                await self._reconcile(key)
            finally:
                self.queue.done(key)
            # A reconcile that only reads the caches never suspends, nor does taking a key that is ready:
            # without this a worker with a backlog ran reconcile after reconcile in one step of the event
            # loop (332 ms seen at 1,000 DataVolumes), and every other task waited.
            await asyncio.sleep(0)

    async def _reconcile(self, key: Key) -> None:
        started = self._clock.monotonic()
        if self._metrics is not None:
            self._metrics.started()
        try:
            result = await self.spec.reconciler.reconcile(key)
        except asyncio.CancelledError:  # cut short at shutdown: controller-runtime's cancelled context errors
            if self._metrics is not None:
                self._metrics.finished("error", self._clock.monotonic() - started)
            raise
        except Exception as error:
            if self._metrics is not None:
                self._metrics.finished("error", self._clock.monotonic() - started)
            retries = self.queue.num_requeues(key)
            level = logging.INFO if isinstance(error, Conflict) else logging.ERROR  # optimistic locking lost: routine
            logger.log(level, "%s: reconcile %s failed (retry %d): %s: %s", self.name, key, retries + 1,
                       type(error).__name__, error)
            logger.debug("%s: reconcile %s traceback", self.name, key, exc_info=True)
            self.queue.add_rate_limited(key)
            return
        logger.debug("%s: reconciled %s in %.3fs", self.name, key, self._clock.monotonic() - started)
        if self._metrics is not None:
            self._metrics.finished(reconcile_result(result.requeue_after), self._clock.monotonic() - started)
        self.queue.forget(key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)

    def _enqueue_own_key(self, event_type: EventType, obj: Object) -> None:
        if self.spec.predicate is None or self.spec.predicate(obj):
            self.queue.add(Key.of(obj))

    def serves(self, key: Key) -> bool:
        """False when the primary object of `key` is cached and the spec's predicate refuses it."""
        if self.spec.predicate is None:
            return True
        primary = self._primary.peek(key)
        return primary is None or self.spec.predicate(primary)


class _MapToKeys:
    """The handler a `Watch` becomes: enqueue whatever keys the watch maps a changed object to."""

    def __init__(self, controller: Controller, watch: Watch) -> None:
        self._controller, self._watch = controller, watch

    def __repr__(self) -> str:
        return f"<{self._controller.name} watch on {self._watch.kind}>"

    def __call__(self, event_type: EventType, obj: Object) -> None:
        meta = obj.get("metadata") or {}
        if self._watch.namespace and meta.get("namespace") != self._watch.namespace:
            return
        labels = meta.get("labels") or {}
        if any(labels.get(name) != value for name, value in (self._watch.label_selector or {}).items()):
            return
        for key in self._watch.map_to_keys(obj):
            if not self._watch.only_served or self._controller.serves(key):
                self._controller.queue.add(key)
