"""The state metrics, computed from the informer caches each time `/metrics` is scraped.

`ClusterReaders` holds the caches the manager already keeps (anything with an informer's `list`), one per
kind; kinds the cluster does not serve are None and observed as empty. `StateCollector` is a
prometheus_client collector: at each scrape it takes an `ObservedState` from the readers and yields the
samples `cdi.monitoring.state` computes — level-triggered, so no controller has to remember to update a
gauge and a deleted object's series simply stops being reported (a list copies the cache, so only the
kinds some series needs are read). Scrapes run on the event loop that owns
the caches (aiohttp's handler), so reading them needs no lock. `cdi.controllers.setup.observe_cluster`
builds the readers for both entrypoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cdi.contracts import metrics as m
from cdi.monitoring import state as s


class ObjectSource(Protocol):
    def list(self, namespace: str | None = None,
             label_selector: Mapping[str, str] | None = None) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class ClusterReaders:
    data_volumes: ObjectSource
    storage_classes: ObjectSource
    storage_profiles: ObjectSource
    claims: ObjectSource | None = None  # for the progress series' claim uids (embedded mode only)
    csi_drivers: ObjectSource | None = None
    snapshot_classes: ObjectSource | None = None
    cdis: ObjectSource | None = None
    pods: ObjectSource | None = None  # worker pods, for their restart counts (embedded mode only)
    pod_selector: Mapping[str, str] | None = None
    unsupported_provisioners: frozenset[str] = frozenset()
    single_node: bool = False

    def observe(self) -> s.ObservedState:
        return s.ObservedState(
            data_volumes=self.data_volumes.list(), storage_classes=self.storage_classes.list(),
            storage_profiles=self.storage_profiles.list(), claims=_listed(self.claims),
            csi_drivers=_listed(self.csi_drivers), snapshot_classes=_listed(self.snapshot_classes),
            cdis=_listed(self.cdis),
            pods=self.pods.list(None, self.pod_selector) if self.pods is not None else (),
            unsupported_provisioners=self.unsupported_provisioners, single_node=self.single_node)


def _listed(source: ObjectSource | None) -> Sequence[Mapping[str, Any]]:
    return source.list() if source is not None else ()


class StateCollector(Collector):
    """Upstream's state gauges; with `workers`, also what `cdi serve`'s worker processes would serve on a
    cluster (import and clone progress) and what kube-state-metrics would (their restarts)."""

    def __init__(self, observe: Callable[[], s.ObservedState], *, workers: bool = False) -> None:
        self._observe, self._workers = observe, workers

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the samples depend on the cluster; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        observed = self._observe()
        yield from state_metrics(observed)
        if self._workers:
            yield from worker_metrics(observed)


def state_metrics(observed: s.ObservedState) -> Iterator[Metric]:
    pending = GaugeMetricFamily(m.DATAVOLUME_PENDING, m.DATAVOLUME_PENDING_HELP)
    pending.add_metric([], s.datavolume_pending(observed.data_volumes))
    yield pending
    profiles = GaugeMetricFamily(m.STORAGEPROFILE_INFO, m.STORAGEPROFILE_INFO_HELP, labels=m.STORAGEPROFILE_LABELS)
    for info in s.storage_profile_info(observed):
        profiles.add_metric(info.labels(), 1)
    yield profiles
    ready = GaugeMetricFamily(m.CR_READY, m.CR_READY_HELP)
    ready.add_metric([], s.cr_ready(observed.cdis))
    yield ready


def worker_metrics(observed: s.ObservedState) -> Iterator[Metric]:
    families = {m.IMPORT_PROGRESS: CounterMetricFamily(m.IMPORT_PROGRESS, m.IMPORT_PROGRESS_HELP,
                                                       labels=[m.LABEL_OWNER_UID]),
                m.CLONE_PROGRESS: CounterMetricFamily(m.CLONE_PROGRESS, m.CLONE_PROGRESS_HELP,
                                                      labels=[m.LABEL_OWNER_UID])}
    for sample in s.progress(observed, m.IMPORT_PROGRESS, m.CLONE_PROGRESS):
        families[sample.metric].add_metric([sample.owner_uid], sample.percent)
    yield from families.values()
    restarts = CounterMetricFamily(m.POD_RESTARTS, m.POD_RESTARTS_HELP, labels=m.POD_RESTARTS_LABELS)
    for container in s.pod_restarts(observed.pods):
        restarts.add_metric([container.namespace, container.pod, container.uid, container.container],
                            container.restarts)
    yield restarts
