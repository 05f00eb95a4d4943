"""A claim deleted while its worker runs: Kubernetes keeps the claim (PVC protection) until no pod uses it,
and the worker pod, owned by the claim, would be collected only after it; the import controller ends the
worker so both can go instead of waiting for each other forever."""

from __future__ import annotations

from cdi.cluster.protocol import Cluster
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock
from tests.controllers.test_reconcilers import scheduled_import, set_container


async def test_the_worker_of_a_deleted_claim_is_ended(cluster: Cluster, clock: FixedClock) -> None:
    _, pods = await scheduled_import(cluster, clock)
    await set_container(cluster, "Running", {"running": {"startedAt": "2026-11-21T06:00:00Z"}})
    # What Kubernetes' PVC-protection admission adds to every claim.
    await cluster.patch("v1", "PersistentVolumeClaim", "fedora",
                        {"metadata": {"finalizers": ["kubernetes.io/pvc-protection"]}}, "default")
    await cluster.delete("v1", "PersistentVolumeClaim", "fedora", "default")
    await pods.reconcile(Key("default", "fedora"))
    assert [p["metadata"]["name"] for p in (await cluster.list("v1", "Pod", "default")).items] == []
