"""The set of CDI's own controllers, built in one place for every entrypoint.

`cdi serve` (embedded) and `cdi controller` (against a real API server) both call `cdi_controllers`
with the cluster their reconcilers should use — the manager's cached client, so reads come from
informer caches — and add the result to their manager. What differs between the two lives outside:
the embedded mode adds its node agent (volume provisioner, pod runner); on Kubernetes, kubelet and
the CSI drivers play those parts.

`observe_cluster` gives the process's metrics the caches its state metrics are computed from
(`cdi.monitoring.collector`), also the same for both entrypoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.events import EventSink
from cdi.cluster.protocol import Cluster
from cdi.contracts.annotations import APP_NAME, LABEL_APP
from cdi.contracts.deployment import NAMESPACE
from cdi.controllers import cdiconfig, datasource, notsupported, storageprofile
from cdi.controllers.capabilities import UNSUPPORTED_PROVISIONERS
from cdi.controllers.clone import datavolume as clone_datavolumes
from cdi.controllers.clone import populator as clone_populator
from cdi.controllers.clone.authorization import CloneAuthorization
from cdi.controllers.dataimportcron import controller as data_import_crons
from cdi.controllers.datavolume import controller as datavolumes
from cdi.controllers.hostclone import controller as host_clones
from cdi.controllers.importpod import controller as import_pods
from cdi.controllers.populators import controller as populators
from cdi.controllers.progress import ProgressScraper
from cdi.controllers.progresswatch import DEFAULT_STALL_TIMEOUT
from cdi.controllers.upload import controller as uploads
from cdi.controllers.upload import rotator as certificate_rotation
from cdi.controllers.upload.rotation import Schedule
from cdi.monitoring import ControlPlaneMetrics
from cdi.monitoring.collector import ClusterReaders, ObjectSource
from cdi.operator import reconciler as operator
from cdi.operator.installer import EmbeddedInstaller
from cdi.operator.versions import operator_version
from cdi.runtime.types import Clock, ControllerSpec
from cdi.tokens import CloneTokens


@dataclass(frozen=True)
class ControllerOptions:
    image: str
    upload_proxy_url: str | None = None
    upload_proxy_ca: str | None = None
    namespace: str = NAMESPACE  # CDI's install namespace: its own Secrets (upload CA, token keys) live there
    # Checks and extends the clone tokens of cross-namespace clones (`cdi.tokens.CloneTokens`); None: no key.
    clone_tokens: CloneTokens | None = None
    # The process's metrics (`cdi.monitoring`), set by the controllers that publish series; None: none.
    metrics: ControlPlaneMetrics | None = None
    # `cdi serve`: the process is the installed control plane, so it also reconciles the CDI resource
    # (`cdi.operator`, with the embedded installer). On a cluster `cdi operator` does, as a process of its own.
    embedded_operator: bool = False
    # Ours: how long a running transfer may move no bytes before its DataVolume gets `Stalled=True`
    # (`--stall-timeout`; a DataVolume's own annotation overrides it, `cdi.controllers.progresswatch`).
    stall_timeout: timedelta = DEFAULT_STALL_TIMEOUT


def cdi_controllers(cluster: Cluster, clock: Clock, scraper: ProgressScraper,
                    options: ControllerOptions, events: EventSink | None = None) -> list[ControllerSpec]:
    """`events`: where the controllers record Events, the manager's recorder (`Manager.events`) so that no
    reconcile waits for them; None: each writes its own at once."""
    authorization = CloneAuthorization(options.clone_tokens, lambda: clock.now().timestamp())
    return [*storageprofile.controllers(cluster, clock),
            *cdiconfig.controllers(cluster, options.upload_proxy_url, options.upload_proxy_ca),
            *import_pods.controllers(cluster, clock, image=options.image, events=events),
            *uploads.controllers(cluster, clock, image=options.image, namespace=options.namespace, events=events),
            *certificate_rotation.controllers(cluster, clock, namespace=options.namespace,
                                              schedule=Schedule.from_environ(os.environ)),
            *datavolumes.controllers(cluster, clock, scraper, stall_timeout=options.stall_timeout, events=events),
            *clone_datavolumes.controllers(cluster, clock, authorization, scraper, stall_timeout=options.stall_timeout,
                                           events=events),
            *datasource.controllers(cluster, clock),
            *data_import_crons.controllers(cluster, clock, metrics=options.metrics, events=events),
            *clone_populator.controllers(cluster, clock, authorization, events=events),
            *populators.controllers(cluster, clock, scraper, events=events),
            *host_clones.controllers(cluster, clock, scraper, image=options.image, namespace=options.namespace,
                                     authorize=authorization.check_clone_request, events=events),
            *notsupported.controllers(cluster, clock, events),
            *(operator.controllers(cluster, clock, EmbeddedInstaller(), namespace=options.namespace,
                                   version=operator_version(), events=events) if options.embedded_operator else [])]


async def observe_cluster(metrics: ControlPlaneMetrics, cluster: Cluster,
                          reader: Callable[[str, str], ObjectSource], *, workers: bool = False,
                          single_node: bool = False) -> None:
    """Compute the state metrics from the caches `reader` (the manager's) keeps. Kinds the cluster may not
    serve (snapshot classes, CSIDrivers, the CDI resource) are read only when served now: an informer of
    an unserved kind would never sync and hold the manager back. `workers`: `cdi serve`, whose worker
    processes nobody else scrapes, also reports their progress and restarts. `single_node`: the control plane
    and all its volumes are on one machine (`cdi serve`), upstream's single-node topology, where a class
    without ReadWriteMany is not degraded (nothing migrates between nodes)."""
    async def optional(api_version: str, kind: str) -> ObjectSource | None:
        return reader(api_version, kind) if await cluster.served(api_version, kind) else None

    readers = ClusterReaders(
        data_volumes=reader(CDI_API_VERSION, "DataVolume"), storage_classes=reader("storage.k8s.io/v1", "StorageClass"),
        storage_profiles=reader(CDI_API_VERSION, "StorageProfile"),
        claims=reader("v1", "PersistentVolumeClaim") if workers else None,
        csi_drivers=await optional("storage.k8s.io/v1", "CSIDriver"),
        snapshot_classes=await optional("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"),
        cdis=await optional(CDI_API_VERSION, "CDI"), pods=reader("v1", "Pod") if workers else None,
        pod_selector={LABEL_APP: APP_NAME}, unsupported_provisioners=UNSUPPORTED_PROVISIONERS,
        single_node=single_node)
    metrics.observe(readers.observe, workers=workers)
