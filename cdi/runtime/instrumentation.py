"""What the runtime reports about its queues and reconciles, as protocols a metrics backend implements.

`cdi.runtime.queue.WorkQueue` tells a `WorkQueueMetrics` about every effective add, hand-out, finished
item and retry, as client-go's work queue tells its `MetricsProvider`; `cdi.runtime.controller.Controller`
tells a `ReconcileMetrics` when a reconcile starts and how it ended, as controller-runtime's controller
updates its reconcile metrics. `cdi.runtime.manager.Manager` asks a `RuntimeMetrics` for one of each per
controller. The Prometheus side is `cdi.monitoring.runtime.ControllerRuntimeMetrics` (it satisfies these
protocols structurally: the monitoring package does not import the runtime). Durations are measured on the
runtime's injected clock, so tests with a fake clock see exact values. Without metrics nothing is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

# controller-runtime's `result` label values.
ReconcileResult = Literal["success", "error", "requeue", "requeue_after"]


class WorkQueueMetrics(Protocol):
    def added(self, depth: int) -> None:
        """A key entered the queue (an add that was not a duplicate); `depth` counts the waiting keys now."""
        ...

    def handed_out(self, depth: int, waited: float) -> None:
        """A worker took a key that had waited `waited` seconds since it was added."""
        ...

    def finished(self, worked: float) -> None:
        """A worker marked a key done after holding it for `worked` seconds."""
        ...

    def retried(self) -> None:
        """A key was parked to be added again later (a backoff or a requested delay)."""
        ...

    def emptied(self) -> None:
        """The queue shut down: nothing waits any more."""
        ...


class ReconcileMetrics(Protocol):
    def workers(self, count: int) -> None:
        """The controller runs `count` workers (its maximum of concurrent reconciles)."""
        ...

    def started(self) -> None:
        """A worker began a reconcile."""
        ...

    def finished(self, result: ReconcileResult, seconds: float) -> None:
        """A reconcile ended with `result` after `seconds`."""
        ...


class RuntimeMetrics(Protocol):
    def workqueue(self, name: str, in_flight: Callable[[], Sequence[float]]) -> WorkQueueMetrics:
        """The metrics of the queue called `name`; `in_flight` gives, when asked, how long each key being
        processed has been held (seconds), for the unfinished-work gauges."""
        ...

    def reconciles(self, controller: str) -> ReconcileMetrics:
        """The reconcile metrics of the controller called `controller`."""
        ...


def reconcile_result(requeue_after: float | None) -> ReconcileResult:
    """controller-runtime's label for a reconcile that returned (errors are `error`)."""
    if requeue_after is None:
        return "success"
    return "requeue_after" if requeue_after > 0 else "requeue"
