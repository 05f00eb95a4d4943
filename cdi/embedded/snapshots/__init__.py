"""VolumeSnapshots for the embedded CSI driver: what external-snapshotter's snapshot-controller and
csi-snapshotter sidecar do, for this node's storage pool.

`controllers(cluster, pool, clock)` (`cdi.embedded.snapshots.controller`) is what the node agent runs
when the cluster serves `snapshot.storage.k8s.io/v1`; `cdi.embedded.snapshots.plan` and `.content_plan`
hold the pure planners (over `.actions`), `cdi.embedded.snapshots.views` the typed views and Kubernetes'
names, and `cdi.embedded.snapshots.crds` renders the three CustomResourceDefinitions for a cluster that
lacks them.
"""

from cdi.embedded.snapshots.controller import ContentReconciler, SnapshotReconciler, controllers
from cdi.embedded.snapshots.views import SNAPSHOT_API

__all__ = ["SNAPSHOT_API", "ContentReconciler", "SnapshotReconciler", "controllers"]
