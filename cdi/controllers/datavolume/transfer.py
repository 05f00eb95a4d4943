"""The DataVolume controllers' part of progress a user can act on: observe a running worker's byte
counters, keep each transfer's `progresswatch.Track`, write bytes/rate/ETA annotations on the DataVolume
when `progresswatch.due` says so, and return the `Stalled` condition's plan for `status.dv_status` to
publish. The decisions are `cdi.controllers.progresswatch`'s; this module only observes and applies.

Called by `cdi.controllers.datavolume.controller` (imports and uploads) and, through
`cdi.controllers.clone.transfer`, by the clone DataVolume controllers (host-assisted copies). Tracks live
in memory, keyed by the DataVolume's namespace and name (and checked against its uid), and are dropped
when the transfer ends or the DataVolume goes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers import progresswatch as pw
from cdi.controllers.meta import annotations_of, find_condition, name_of, namespace_of, uid_of
from cdi.controllers.progress import ProgressPage
from cdi.runtime.types import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transfer:
    """A running worker as the controller saw it this time."""

    page: ProgressPage | None  # None: the scrape failed (no reading this time)
    waiting: pw.Waiting
    hint: str  # where to look when it stalls


class TransferWatch:
    def __init__(self, cluster: Cluster, clock: Clock, stall_timeout: timedelta = pw.DEFAULT_STALL_TIMEOUT) -> None:
        self._cluster = cluster
        self._clock = clock
        self._stall_timeout = stall_timeout
        self._tracks: dict[tuple[str, str], tuple[str, pw.Track]] = {}  # (namespace, name) -> (uid, track)

    def forget(self, namespace: str, name: str) -> None:
        self._tracks.pop((namespace, name), None)

    async def running(self, doc: Object, transfer: Transfer) -> pw.StallPlan:
        """A transfer whose worker runs: record the reading, publish, decide about stalls."""
        page, now = transfer.page, self._clock.monotonic()
        if page is None or page.done is None:
            return pw.StallPlan(None)
        key, uid = (namespace_of(doc), name_of(doc)), uid_of(doc)
        kept = self._tracks.get(key)
        previous = kept[1] if kept is not None and kept[0] == uid else None  # not a namesake's that was deleted
        track = pw.advance(previous, pw.Reading(now, page.done, page.total, page.percent))
        f = pw.figures(track)
        current, wanted = annotations_of(doc), pw.published(f)
        if pw.due(track, now, current, wanted):
            await self._annotate(doc, pw.changes(current, wanted))
            track = replace(track, published_at=now)
        self._tracks[key] = (uid, track)
        timeout = self._timeout(doc)
        verdict = pw.stalled(track, now, timeout, transfer.waiting)
        return pw.stall_plan(_stalled_status(doc), verdict, f, timeout, transfer.hint)

    async def ended(self, doc: Object, succeeded: bool) -> pw.StallPlan:
        """A transfer that is not running (any more): no rate or ETA to show; all bytes done on success."""
        self.forget(namespace_of(doc), name_of(doc))
        current = annotations_of(doc)
        if ann.ANN_TRANSFER_BYTES_DONE in current:
            wanted: dict[str, str | None] = {ann.ANN_TRANSFER_RATE: None, ann.ANN_TRANSFER_ETA: None}
            if succeeded and current.get(ann.ANN_TRANSFER_BYTES_TOTAL):
                wanted[ann.ANN_TRANSFER_BYTES_DONE] = current[ann.ANN_TRANSFER_BYTES_TOTAL]
            if delta := pw.changes(current, wanted):
                await self._annotate(doc, delta)
        return pw.ended(_stalled_status(doc))

    def _timeout(self, doc: Object) -> timedelta:
        timeout, problem = pw.stall_timeout(annotations_of(doc).get(ann.ANN_STALL_TIMEOUT), self._stall_timeout)
        if problem:
            log.warning("DataVolume %s/%s: %s", namespace_of(doc), name_of(doc), problem)
        return timeout

    async def _annotate(self, doc: Object, delta: dict[str, str | None]) -> None:
        await self._cluster.patch(doc["apiVersion"], doc["kind"], name_of(doc), {"metadata": {"annotations": delta}},
                                  namespace_of(doc))


def _stalled_status(doc: Object) -> str | None:
    condition = find_condition((doc.get("status") or {}).get("conditions") or [], pw.STALLED)
    return str(condition.get("status")) if condition else None
