"""The pod runner as a controller for the manager: primary kind Pod, woken by claim changes.

`cdi serve` builds a `PodRunner`, adds these specs to its manager and wires process exits to the
queue: `controller = manager.add(spec); runner.on_change = controller.queue.add`. A change to a
PersistentVolumeClaim (it bound, it got its selected node) enqueues the pods the runner has seen use
it, so scheduling and volume set-up proceed as soon as the provisioner is done.
"""

from __future__ import annotations

from collections.abc import Iterable

from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import ControllerSpec, Key, Watch

NAME = "pod-runner"
WORKERS = 4  # pods are independent; a slow volume set-up should not hold up others


def controllers(cluster: Cluster, runner: PodRunner) -> list[ControllerSpec]:
    """The runner's controller. `cluster` is the one `runner` was built on; it is taken for the
    signature every controller module shares and is not used otherwise."""

    def pods_using(claim: Object) -> Iterable[Key]:
        meta = claim.get("metadata") or {}
        return runner.pods_using_claim(str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    return [ControllerSpec(name=NAME, api_version="v1", kind="Pod", reconciler=runner,
                           watches=(Watch("v1", "PersistentVolumeClaim", pods_using),), workers=WORKERS)]
