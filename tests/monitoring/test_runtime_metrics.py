"""controller-runtime's reconcile and work-queue metrics as `cdi.runtime` reports them: a work queue on the
fake clock gives exact adds, depths, waits, work durations and retries (client-go's semantics: a duplicate
add is not counted, every delayed add is a retry); a manager running the runtime tests' toy controller on
the embedded store moves `controller_runtime_reconcile_total` by result, counts an injected failure as an
error, and its queue's series move with it; a reconcile cut short at shutdown is an error and frees its
worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.contracts import metrics as m
from cdi.embedded import EmbeddedCluster
from cdi.monitoring import ControlPlaneMetrics
from cdi.runtime.manager import Manager
from cdi.runtime.queue import WorkQueue
from cdi.runtime.types import Key
from tests.runtime.clock import FakeClock
from tests.runtime.toys import add_mirror, configmap, secret_value
from tests.runtime.waiting import running, until

Q = {m.LABEL_QUEUE_NAME: "q", m.LABEL_CONTROLLER: "q"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cluster(tmp_path: Path, clock: FakeClock) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "cluster.db", clock=clock.now, poll_interval=0.02) as opened:
        yield opened


def value(metrics: ControlPlaneMetrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.value(name, labels)


async def test_work_queue_series(clock: FakeClock) -> None:
    metrics = ControlPlaneMetrics()
    queue = WorkQueue(clock)
    queue.instrument(metrics.runtime.workqueue("q", queue.in_flight))
    a, b = Key("default", "a"), Key("default", "b")
    queue.add(a)
    queue.add(a)  # a duplicate: neither an add nor deeper
    queue.add(b)
    assert value(metrics, m.WORKQUEUE_ADDS, Q) == 2
    assert value(metrics, m.WORKQUEUE_DEPTH, {**Q, m.LABEL_PRIORITY: ""}) == 2

    clock.advance(2)
    assert await queue.get() == a  # waited 2 s
    assert value(metrics, m.WORKQUEUE_DEPTH, {**Q, m.LABEL_PRIORITY: ""}) == 1
    assert value(metrics, m.WORKQUEUE_QUEUE_DURATION + "_sum", Q) == 2
    clock.advance(3)
    assert value(metrics, m.WORKQUEUE_UNFINISHED_WORK, Q) == 3  # a has been held 3 s
    assert value(metrics, m.WORKQUEUE_LONGEST_RUNNING, Q) == 3
    queue.done(a)
    assert value(metrics, m.WORKQUEUE_WORK_DURATION + "_count", Q) == 1
    assert value(metrics, m.WORKQUEUE_WORK_DURATION + "_sum", Q) == 3
    assert value(metrics, m.WORKQUEUE_UNFINISHED_WORK, Q) == 0

    queue.add_rate_limited(a)  # a backoff and a requested delay are both retries
    queue.add_after(b, 10)
    assert value(metrics, m.WORKQUEUE_RETRIES, Q) == 2
    queue.shutdown()
    assert value(metrics, m.WORKQUEUE_DEPTH, {**Q, m.LABEL_PRIORITY: ""}) == 0


async def test_a_manager_reports_reconciles(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    metrics = ControlPlaneMetrics()
    manager = Manager(cluster, clock=clock, metrics=metrics.runtime)
    add_mirror(manager, cluster, failures=1, workers=3)
    mirror_labels = {m.LABEL_CONTROLLER: "mirror"}

    def total(result: str) -> float | None:
        return value(metrics, m.RECONCILE_TOTAL, {**mirror_labels, m.LABEL_RESULT: result})

    # Built, not run yet: every series exists at 0, as controller-runtime initialises them.
    assert [total(r) for r in ("success", "error", "requeue", "requeue_after")] == [0, 0, 0, 0]
    assert value(metrics, m.RECONCILE_ERRORS, mirror_labels) == 0
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        await until(lambda: total("error") == 1, timeout=10, what="the injected failure to be counted")
        assert value(metrics, m.RECONCILE_ERRORS, mirror_labels) == 1
        assert value(metrics, m.MAX_CONCURRENT_RECONCILES, mirror_labels) == 3
        clock.advance(1)  # past the first backoff: the retry succeeds
        await until(lambda: secret_value(cluster, "a"), timeout=10, what="the mirror to be written")
        await until(lambda: (total("success") or 0) >= 1, timeout=10, what="a successful reconcile to be counted")
        # The mirror's own Secret wakes it once more: the gauge drops back to 0 when that reconcile ends.
        await until(lambda: value(metrics, m.ACTIVE_WORKERS, mirror_labels) == 0, timeout=10,
                    what="the workers to be idle")
        assert value(metrics, m.RECONCILE_TIME + "_count", mirror_labels) == (total("success") or 0) + 1
        queue = {m.LABEL_QUEUE_NAME: "mirror", m.LABEL_CONTROLLER: "mirror"}
        assert (value(metrics, m.WORKQUEUE_ADDS, queue) or 0) >= 2  # the create, then the backoff retry
        assert value(metrics, m.WORKQUEUE_RETRIES, queue) == 1


async def test_requeue_after_is_its_own_result(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    metrics = ControlPlaneMetrics()
    manager = Manager(cluster, clock=clock, metrics=metrics.runtime)
    add_mirror(manager, cluster, requeue_after=30)
    await cluster.create(configmap("a", "1"))
    labels = {m.LABEL_CONTROLLER: "mirror", m.LABEL_RESULT: "requeue_after"}
    async with running(manager):
        await until(lambda: (metrics.value(m.RECONCILE_TOTAL, labels) or 0) >= 1, timeout=10, what="a requeue_after result")
        assert metrics.value(m.RECONCILE_TOTAL, {**labels, m.LABEL_RESULT: "success"}) == 0


async def test_a_reconcile_cancelled_at_shutdown_is_an_error(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    metrics = ControlPlaneMetrics()
    manager = Manager(cluster, clock=clock, metrics=metrics.runtime, shutdown_timeout=0.05)
    mirror = add_mirror(manager, cluster, gate=asyncio.Event())  # never opened: the reconcile hangs
    labels = {m.LABEL_CONTROLLER: "mirror"}
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        await asyncio.wait_for(mirror.entered.wait(), 10)
        assert metrics.value(m.ACTIVE_WORKERS, labels) == 1
    assert metrics.value(m.ACTIVE_WORKERS, labels) == 0
    assert metrics.value(m.RECONCILE_TOTAL, {**labels, m.LABEL_RESULT: "error"}) == 1
