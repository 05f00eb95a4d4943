"""A DataVolume stored before admission checked it (an older version's store) whose claim the API
server now refuses: the controller says why in the Ready condition and an event, and does not crash."""

from __future__ import annotations

from pathlib import Path

from cdi.controllers.datavolume.controller import IMPORT_KIND, DataVolumeReconciler
from cdi.embedded import EmbeddedCluster
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock
from tests.controllers.test_reconcilers import DV_API, NoProgress, setup_storage


async def test_refused_claim_is_reported_not_retried_in_a_loop(tmp_path: Path, clock: FixedClock) -> None:
    async with EmbeddedCluster(tmp_path / "store.db", admission=lambda request, lookup: None) as lax:
        await lax.create({"apiVersion": DV_API, "kind": "DataVolume",
                          "metadata": {"name": "huge", "namespace": "default"},
                          "spec": {"source": {"blank": {}},
                                   "storage": {"resources": {"requests": {"storage": "999999999999999999999999Ei"}}}}})
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        await setup_storage(cluster, clock)
        result = await DataVolumeReconciler(cluster, clock, IMPORT_KIND, NoProgress()).reconcile(Key("default", "huge"))
        assert result.requeue_after is not None
        status = (await cluster.get(DV_API, "DataVolume", "huge", "default"))["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "ErrClaimNotValid"
        assert "must be at most 8Ei" in ready["message"]
        assert (await cluster.list("v1", "PersistentVolumeClaim", "default")).items == []
