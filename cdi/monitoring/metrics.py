"""The control plane's metrics on a registry owned by the process.

`ControlPlaneMetrics` is built once by each entrypoint (`cdi serve`, `cdi controller`) and handed to the
controllers that set series; `cdi.monitoring.server` exposes its `registry`. Tests build their own and
read values back with `value`. Its `runtime` (`cdi.monitoring.runtime`) is the manager's reconcile and
work-queue metrics; `observe` adds the state metrics computed from the caches at each scrape
(`cdi.monitoring.collector`); the process's own `process_*` series come from prometheus_client.

`kubevirt_cdi_dataimportcron_outdated{namespace, cron_name, pending}` follows upstream's
`updateDataImportCronOutdatedMetric`: each update first drops the cron's series (whatever its `pending`
value), then sets the one series that is true now, so a cron never shows as both pending and not.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, disable_created_metrics

from cdi.contracts import metrics as m
from cdi.monitoring.collector import StateCollector
from cdi.monitoring.runtime import ControllerRuntimeMetrics
from cdi.monitoring.state import ObservedState


class ControlPlaneMetrics:
    def __init__(self) -> None:
        # Upstream's Go client writes no `*_created` series; prometheus_client's switch is per process (the
        # control plane's processes serve only this registry, and the importer's page is in its own process).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in prometheus_client 0.26)
        self.registry = CollectorRegistry(auto_describe=True)
        self._cron_outdated = Gauge(m.DATAIMPORTCRON_OUTDATED, m.DATAIMPORTCRON_OUTDATED_HELP,
                                    [m.LABEL_NAMESPACE, m.LABEL_CRON_NAME, m.LABEL_PENDING],
                                    registry=self.registry)
        self.runtime = ControllerRuntimeMetrics(self.registry)
        ProcessCollector(registry=self.registry)

    def observe(self, observe: Callable[[], ObservedState], *, workers: bool = False) -> None:
        """Report the state metrics of what `observe` returns at each scrape (`workers`: also the worker
        pods' progress and restarts, for a control plane whose workers nobody else scrapes)."""
        self.registry.register(StateCollector(observe, workers=workers))

    def set_cron_outdated(self, namespace: str, name: str, *, outdated: bool, pending: bool) -> None:
        """The cron's one series: 1 while outdated, 0 when up to date; `pending` as upstream's label."""
        self.forget_cron(namespace, name)
        self._cron_outdated.labels(namespace, name, _bool_label(pending)).set(1 if outdated else 0)

    def forget_cron(self, namespace: str, name: str) -> None:
        """Drops every series of a cron (it was deleted)."""
        self._cron_outdated.remove_by_labels({m.LABEL_NAMESPACE: namespace, m.LABEL_CRON_NAME: name})

    def value(self, metric: str, labels: dict[str, str]) -> float | None:
        """One sample's value, None when the series does not exist (for tests and diagnostics)."""
        return self.registry.get_sample_value(metric, labels)


def _bool_label(value: bool) -> str:
    return "true" if value else "false"  # Go's strconv.FormatBool, as upstream writes the label
