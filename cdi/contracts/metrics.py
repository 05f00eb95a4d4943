"""Metric names and the exposition line format shared by the importer (which serves progress) and the
controller (which scrapes it into `DataVolume.status.progress`), and the names of the control plane's own
metrics (`cdi.monitoring` defines and serves them; alert rules and dashboards query them by these names)."""

from __future__ import annotations

import re
from typing import Final

IMPORT_PROGRESS: Final = "kubevirt_cdi_import_progress_total"
CLONE_PROGRESS: Final = "kubevirt_cdi_clone_progress_total"
METRICS_PATH: Final = "/metrics"

# The control plane's metrics, as upstream names them (doc/metrics.md). `DATAIMPORTCRON_OUTDATED` is 1
# while a cron's UpToDate condition is not True, 0 once it is; `pending="true"` marks a cron that waits
# for a default StorageClass (the alert CDIDataImportCronOutdated only counts `pending="false"`).
DATAIMPORTCRON_OUTDATED: Final = "kubevirt_cdi_dataimportcron_outdated"
DATAIMPORTCRON_OUTDATED_HELP: Final = "DataImportCron has an outdated import"
LABEL_NAMESPACE: Final = "namespace"
LABEL_CRON_NAME: Final = "cron_name"
LABEL_PENDING: Final = "pending"


# Ours, served beside the percentage by importers, upload servers and the clone source pod (the percentage
# stays upstream's): bytes of the source read (import), received (upload) or sent (host-assisted clone) so
# far, and the size when the worker knows it (Content-Length, a resumable upload's declared size, the clone
# source's data extents). The DataVolume controller turns successive
# readings into a rate and an ETA (`cdi.controllers.progresswatch`).
TRANSFER_BYTES_DONE: Final = "pycdi_transfer_bytes_done"
TRANSFER_BYTES_TOTAL: Final = "pycdi_transfer_bytes_total"
TRANSFER_BYTES_DONE_HELP: Final = "Bytes transferred so far"
TRANSFER_BYTES_TOTAL_HELP: Final = "Bytes the transfer will move in all, when known"


def progress_line(metric: str, owner_uid: str, percent: float) -> str:
    return f'{metric}{{ownerUID="{owner_uid}"}} {percent:.2f}'


def parse_progress(text: str, owner_uid: str) -> float | None:
    """The progress percentage for `owner_uid` in a metrics page, as upstream's controller reads it."""
    pattern = re.compile(
        rf'({IMPORT_PROGRESS}|{CLONE_PROGRESS})\{{ownerUID="{re.escape(owner_uid)}"\}} (\d{{1,3}}\.?\d*)')
    match = pattern.search(text)
    return float(match.group(2)) if match else None


def bytes_line(metric: str, owner_uid: str, count: int) -> str:
    return f'{metric}{{ownerUID="{owner_uid}"}} {count}'


def transfer_lines(owner_uid: str, done: int, total: int | None) -> list[str]:
    """The byte counters as a worker's metrics page carries them beside its percentage (the total only
    when known). Served by importers, upload servers and the clone source (`cdi-cloner`)."""
    lines = [f"# HELP {TRANSFER_BYTES_DONE} {TRANSFER_BYTES_DONE_HELP}", f"# TYPE {TRANSFER_BYTES_DONE} gauge",
             bytes_line(TRANSFER_BYTES_DONE, owner_uid, done)]
    if total is not None:
        lines += [f"# HELP {TRANSFER_BYTES_TOTAL} {TRANSFER_BYTES_TOTAL_HELP}", f"# TYPE {TRANSFER_BYTES_TOTAL} gauge",
                  bytes_line(TRANSFER_BYTES_TOTAL, owner_uid, total)]
    return lines


def parse_bytes(text: str, metric: str, owner_uid: str) -> int | None:
    """One of the byte counters for `owner_uid` in a metrics page; None when the worker does not serve it."""
    match = re.search(rf'^{metric}\{{ownerUID="{re.escape(owner_uid)}"\}} (\d+)(?:\.0*)?$', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def format_progress(percent: float) -> str:
    """`DataVolume.status.progress` as upstream writes it ("45.27%")."""
    return f"{percent:.2f}%"


# The rest of upstream's control-plane metrics (pkg/monitoring/metrics, doc/metrics.md), computed from the
# cluster's state at each scrape by `cdi.monitoring.state`.
DATAVOLUME_PENDING: Final = "kubevirt_cdi_datavolume_pending"
DATAVOLUME_PENDING_HELP: Final = "Number of DataVolumes pending for default storage class to be configured"
STORAGEPROFILE_INFO: Final = "kubevirt_cdi_storageprofile_info"
STORAGEPROFILE_INFO_HELP: Final = (
    "`StorageProfiles` info labels: `storageclass`, `provisioner`, "
    "`complete` indicates if all storage profiles recommended PVC settings are complete, "
    "`default` indicates if it's the Kubernetes default storage class, "
    "`virtdefault` indicates if it's the default virtualization storage class, "
    "`rwx` indicates if the storage class supports `ReadWriteMany`, "
    "`smartclone` indicates if it supports snapshot or CSI based clone, "
    "`degraded` indicates it is not optimal for virtualization")
STORAGEPROFILE_LABELS: Final = ("storageclass", "provisioner", "complete", "default", "virtdefault", "rwx",
                                "smartclone", "degraded")
CR_READY: Final = "kubevirt_cdi_cr_ready"
CR_READY_HELP: Final = "CDI install ready"
IMPORT_PROGRESS_HELP: Final = "The import progress in percentage"
CLONE_PROGRESS_HELP: Final = "The clone progress in percentage"
LABEL_OWNER_UID: Final = "ownerUID"
# kube-state-metrics' restart counter, which upstream's `*_pods_high_restart` recording rules read; the
# embedded control plane reports it for its own worker pods (there is no kube-state-metrics there).
POD_RESTARTS: Final = "kube_pod_container_status_restarts_total"
POD_RESTARTS_HELP: Final = "The number of container restarts per container."
POD_RESTARTS_LABELS: Final = ("namespace", "pod", "uid", "container")
UNUSUAL_RESTART_COUNT_THRESHOLD: Final = 3  # upstream's common.UnusualRestartCountThreshold

# Recording rules (upstream's pkg/monitoring/rules/recordingrules): the `cluster:` names and their
# deprecated aliases, recorded by the PrometheusRule `cdi.install.alerts` renders.
OPERATOR_UP: Final = "cluster:kubevirt_cdi_operator_up:sum"
IMPORT_PODS_HIGH_RESTART: Final = "cluster:kubevirt_cdi_import_pods_high_restart:count"
UPLOAD_PODS_HIGH_RESTART: Final = "cluster:kubevirt_cdi_upload_pods_high_restart:count"
CLONE_PODS_HIGH_RESTART: Final = "cluster:kubevirt_cdi_clone_pods_high_restart:count"

# controller-runtime's reconcile metrics (pkg/internal/controller/metrics) and client-go's work-queue
# metrics as controller-runtime registers them (pkg/metrics/workqueue.go), for every controller of the
# process (`cdi.runtime` reports them through `cdi.monitoring.runtime`).
RECONCILE_TOTAL: Final = "controller_runtime_reconcile_total"
RECONCILE_ERRORS: Final = "controller_runtime_reconcile_errors_total"
RECONCILE_TIME: Final = "controller_runtime_reconcile_time_seconds"
MAX_CONCURRENT_RECONCILES: Final = "controller_runtime_max_concurrent_reconciles"
ACTIVE_WORKERS: Final = "controller_runtime_active_workers"
WORKQUEUE_DEPTH: Final = "workqueue_depth"
WORKQUEUE_ADDS: Final = "workqueue_adds_total"
WORKQUEUE_QUEUE_DURATION: Final = "workqueue_queue_duration_seconds"
WORKQUEUE_WORK_DURATION: Final = "workqueue_work_duration_seconds"
WORKQUEUE_UNFINISHED_WORK: Final = "workqueue_unfinished_work_seconds"
WORKQUEUE_LONGEST_RUNNING: Final = "workqueue_longest_running_processor_seconds"
WORKQUEUE_RETRIES: Final = "workqueue_retries_total"
LABEL_CONTROLLER: Final = "controller"
LABEL_RESULT: Final = "result"
LABEL_QUEUE_NAME: Final = "name"
LABEL_PRIORITY: Final = "priority"
# controller-runtime's `result` values.
RESULT_SUCCESS: Final = "success"
RESULT_ERROR: Final = "error"
RESULT_REQUEUE: Final = "requeue"
RESULT_REQUEUE_AFTER: Final = "requeue_after"
