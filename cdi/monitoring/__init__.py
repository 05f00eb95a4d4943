"""The control plane's Prometheus metrics: one registry per process and the HTTP endpoint serving it.

`metrics` defines the metrics (names from `cdi.contracts.metrics`) on a registry the process owns — never
prometheus_client's global default, so two control planes in one test process do not share series;
controllers are handed the `ControlPlaneMetrics` and set what they observe. `runtime` holds
controller-runtime's reconcile and work-queue series, which the runtime's manager reports into; `state`
computes upstream's state metrics from observed objects and `collector` serves them from the informer
caches at each scrape. `server` serves the registry as `GET /metrics`; `cdi serve` and `cdi controller`
start it with `--metrics-port`; `operator` is `cdi operator`'s own registry (the CR's readiness and its
controller's runtime series). The importer's progress endpoint (`importer.metrics`) is the data plane's
counterpart and does not use this package; the alert rules that query these metrics are rendered by
`cdi.install.alerts`.
"""

from cdi.monitoring.metrics import ControlPlaneMetrics
from cdi.monitoring.operator import OperatorMetrics
from cdi.monitoring.server import MetricsServer, metrics_handler

__all__ = ["ControlPlaneMetrics", "MetricsServer", "OperatorMetrics", "metrics_handler"]
