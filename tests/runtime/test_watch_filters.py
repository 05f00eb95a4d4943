"""A watch's namespace and label selector filter events of the kind's one shared informer, the same the
cached client reads through: when an event wakes a reconcile, the cache already holds that change."""

from __future__ import annotations

from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.runtime.controller import Controller
from cdi.runtime.informer import SharedInformers
from cdi.runtime.types import DONE, ControllerSpec, Key, Result, Watch


class Nothing:
    async def reconcile(self, key: Key) -> Result:
        return DONE


async def test_selected_events_only_and_one_informer_per_kind(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "s.db", poll_interval=0.02) as cluster:
        informers = SharedInformers(cluster)
        watch = Watch("v1", "ConfigMap", lambda obj: [Key("default", "owner")], namespace="default",
                      label_selector={"watched": "yes"})
        controller = Controller(ControllerSpec("c", "v1", "Secret", Nothing(), watches=[watch]), informers)
        assert len(list(informers)) == 2  # Secret and ConfigMap, each once, unfiltered
        handler = controller.informers[1]._handlers[0]  # the watch's handler, called directly
        handler("ADDED", {"metadata": {"name": "x", "namespace": "default", "labels": {"watched": "no"}}})
        handler("ADDED", {"metadata": {"name": "x", "namespace": "other", "labels": {"watched": "yes"}}})
        assert len(controller.queue) == 0
        handler("ADDED", {"metadata": {"name": "watched", "namespace": "default", "labels": {"watched": "yes"}}})
        assert len(controller.queue) == 1
