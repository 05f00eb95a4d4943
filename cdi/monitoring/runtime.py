"""controller-runtime's reconcile metrics and client-go's work-queue metrics, on a process's registry.

`ControllerRuntimeMetrics` is what `cdi.runtime.manager.Manager` is given as its `RuntimeMetrics`
(`cdi.runtime.instrumentation`; satisfied structurally, this package does not import the runtime): for
each controller it hands the work queue a `_QueueMetrics` and the controller a `_ReconcileMetrics`, which
update the series controller-runtime would: `controller_runtime_reconcile_total{controller,result}`,
`..._reconcile_errors_total`, `..._reconcile_time_seconds` (its buckets), `..._max_concurrent_reconciles`,
`..._active_workers`, and `workqueue_*{name,controller}` (depth also has controller-runtime's `priority`
label, always "" here: our queues have no priorities). As controller-runtime does, a controller's series
exist at 0 from the moment it is built, so a rate over them is defined before its first reconcile.

Not reported: controller-runtime's `..._reconcile_panics_total` and `..._terminal_reconcile_errors_total`
(Python has no panics distinct from errors, and our reconcilers report terminal failures in conditions,
never as a non-retried error), and the Go runtime's own metrics (prometheus_client's process collector
reports `process_*` instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cdi.contracts import metrics as m

# controller-runtime's reconcile-time buckets, and client-go's queue buckets (ExponentialBuckets(10e-9, 10, 12)).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
                     1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60)
QUEUE_BUCKETS = tuple(1e-8 * 10**power for power in range(12))
RESULTS = (m.RESULT_SUCCESS, m.RESULT_ERROR, m.RESULT_REQUEUE, m.RESULT_REQUEUE_AFTER)


class ControllerRuntimeMetrics:
    """The reconcile and work-queue series of every controller of a process, on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        queue = [m.LABEL_QUEUE_NAME, m.LABEL_CONTROLLER]
        self.reconcile_total = Counter(m.RECONCILE_TOTAL, "Total number of reconciliations per controller",
                                       [m.LABEL_CONTROLLER, m.LABEL_RESULT], registry=registry)
        self.reconcile_errors = Counter(m.RECONCILE_ERRORS, "Total number of reconciliation errors per controller",
                                        [m.LABEL_CONTROLLER], registry=registry)
        self.reconcile_time = Histogram(m.RECONCILE_TIME, "Length of time per reconciliation per controller",
                                        [m.LABEL_CONTROLLER], buckets=RECONCILE_BUCKETS, registry=registry)
        self.max_concurrent = Gauge(m.MAX_CONCURRENT_RECONCILES, "Maximum number of concurrent reconciles per "
                                    "controller", [m.LABEL_CONTROLLER], registry=registry)
        self.active_workers = Gauge(m.ACTIVE_WORKERS, "Number of currently used workers per controller",
                                    [m.LABEL_CONTROLLER], registry=registry)
        self.depth = Gauge(m.WORKQUEUE_DEPTH, "Current depth of workqueue by workqueue and priority",
                           [*queue, m.LABEL_PRIORITY], registry=registry)
        self.adds = Counter(m.WORKQUEUE_ADDS, "Total number of adds handled by workqueue", queue, registry=registry)
        self.queue_duration = Histogram(m.WORKQUEUE_QUEUE_DURATION, "How long in seconds an item stays in workqueue "
                                        "before being requested", queue, buckets=QUEUE_BUCKETS, registry=registry)
        self.work_duration = Histogram(m.WORKQUEUE_WORK_DURATION, "How long in seconds processing an item from "
                                       "workqueue takes.", queue, buckets=QUEUE_BUCKETS, registry=registry)
        self.retries = Counter(m.WORKQUEUE_RETRIES, "Total number of retries handled by workqueue", queue,
                               registry=registry)
        self._in_flight: dict[str, Callable[[], Sequence[float]]] = {}
        registry.register(_UnfinishedWork(self._in_flight))

    def workqueue(self, name: str, in_flight: Callable[[], Sequence[float]]) -> _QueueMetrics:
        self._in_flight[name] = in_flight
        return _QueueMetrics(self, name)

    def reconciles(self, controller: str) -> _ReconcileMetrics:
        return _ReconcileMetrics(self, controller)


class _QueueMetrics:
    """One queue's series; controller-runtime names a controller's queue after the controller."""

    def __init__(self, metrics: ControllerRuntimeMetrics, name: str) -> None:
        self._depth = metrics.depth.labels(name, name, "")
        self._adds = metrics.adds.labels(name, name)
        self._queue_duration = metrics.queue_duration.labels(name, name)
        self._work_duration = metrics.work_duration.labels(name, name)
        self._retries = metrics.retries.labels(name, name)

    def added(self, depth: int) -> None:
        self._adds.inc()
        self._depth.set(depth)

    def handed_out(self, depth: int, waited: float) -> None:
        self._depth.set(depth)
        self._queue_duration.observe(waited)

    def finished(self, worked: float) -> None:
        self._work_duration.observe(worked)

    def retried(self) -> None:
        self._retries.inc()

    def emptied(self) -> None:
        self._depth.set(0)


class _ReconcileMetrics:
    def __init__(self, metrics: ControllerRuntimeMetrics, controller: str) -> None:
        self._total = {result: metrics.reconcile_total.labels(controller, result) for result in RESULTS}
        self._errors = metrics.reconcile_errors.labels(controller)
        self._time = metrics.reconcile_time.labels(controller)
        self._max = metrics.max_concurrent.labels(controller)
        self._active = metrics.active_workers.labels(controller)

    def workers(self, count: int) -> None:
        self._max.set(count)

    def started(self) -> None:
        self._active.inc()

    def finished(self, result: str, seconds: float) -> None:
        self._active.dec()
        self._total[result].inc()
        if result == m.RESULT_ERROR:
            self._errors.inc()
        self._time.observe(seconds)


class _UnfinishedWork(Collector):
    """`workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`, computed at
    scrape time from the keys each queue holds (client-go updates them every 500 ms; the values agree)."""

    def __init__(self, queues: dict[str, Callable[[], Sequence[float]]]) -> None:
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = [m.LABEL_QUEUE_NAME, m.LABEL_CONTROLLER]
        unfinished = GaugeMetricFamily(
            m.WORKQUEUE_UNFINISHED_WORK, "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck "
            "threads by observing the rate at which this increases.", labels=labels)
        longest = GaugeMetricFamily(m.WORKQUEUE_LONGEST_RUNNING, "How many seconds has the longest running processor "
                                    "for workqueue been running.", labels=labels)
        for name, in_flight in sorted(self._queues.items()):
            held = in_flight()
            unfinished.add_metric([name, name], sum(held))
            longest.add_metric([name, name], max(held, default=0.0))
        yield unfinished
        yield longest
