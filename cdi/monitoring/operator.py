"""`cdi operator`'s own metrics: what upstream's operator serves, on a registry of its own.

Upstream's operator reports `kubevirt_cdi_cr_ready` (1 when the CDI resource is Available, 0 when not; -1
here while there is none, so `CDINotReady` does not fire before an install) and controller-runtime's
reconcile and work-queue series for its one controller. `OperatorMetrics` holds them: `runtime` is what
the operator's `cdi.runtime.manager.Manager` reports into (`cdi.monitoring.runtime`), the CR gauge is
computed at each scrape from the CDI resources `cdis` returns (the manager's informer cache, as the
control plane's state metrics are: `cdi.monitoring.collector`), and prometheus_client's `process_*`
series come with it. `cdi.cli.operator` builds it and serves `registry` on the operator's health port
(`cdi.monitoring.server.metrics_handler`); Prometheus finds the pod through the install's
`cdi-prometheus-metrics` Service, and its `up` series is what `CDIOperatorDown` watches
(`cdi.install.alerts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cdi.contracts import metrics as m
from cdi.monitoring.runtime import ControllerRuntimeMetrics
from cdi.monitoring.state import cr_ready

CdiSource = Callable[[], Sequence[Mapping[str, Any]]]


class CrReadyCollector(Collector):
    """`kubevirt_cdi_cr_ready`, from the CDI resources as they are at the scrape."""

    def __init__(self, cdis: CdiSource) -> None:
        self._cdis = cdis

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(m.CR_READY, m.CR_READY_HELP)
        ready.add_metric([], cr_ready(self._cdis()))
        yield ready


class OperatorMetrics:
    def __init__(self, cdis: CdiSource) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # as ControlPlaneMetrics: no `*_created`
        self.registry = CollectorRegistry(auto_describe=True)
        self.runtime = ControllerRuntimeMetrics(self.registry)
        self.registry.register(CrReadyCollector(cdis))
        ProcessCollector(registry=self.registry)

    def value(self, metric: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value, None when the series does not exist (for tests and diagnostics)."""
        return self.registry.get_sample_value(metric, labels or {})
