"""The clone DataVolume controllers' part of progress a user can act on (ours; upstream shows only a
percentage): find the host-assisted copy a clone DataVolume waits on and the `cdi-cloner` source pod that
runs it, whose metrics page serves the byte counters (`importer.cloner.main`), and hand what it shows to
`cdi.controllers.datavolume.transfer.TransferWatch`, which applies `cdi.controllers.progresswatch`'s
decisions exactly as for imports: bytes/rate/ETA annotations on the DataVolume and the `Stalled` condition.

The copy fills either the target claim itself (`k8s.io/CloneRequest`: upstream's NoPopulator fallback) or,
with the clone populator and the `copy` strategy, its temporary claim `tmp-pvc-<target uid>` in the source's
namespace while the target's `clonePhase` is HostClone (`cdi.controllers.clone.phases.host_clone_phase`).
Its source pod is `<copy claim uid>-source-pod` in the source's namespace (`cdi.controllers.hostclone`).

    copy_claim_key, source_pod_key   pure: where the copy and its source pod are
    stage                            pure: what the transfer is doing now (`Stage`)
    HostCopyWatch                    observes (a few GETs, one scrape) and applies

Only a running source pod is a transfer that can stall: a clone waiting for its source (`CloneSourceInUse`)
or for its upload server, or in a snapshot, CSI-clone or rebind phase, is not. Used by
`cdi.controllers.clone.datavolume`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts.annotations import ClonePhase
from cdi.controllers import progresswatch as pw
from cdi.controllers.clone.facts import get_or_none
from cdi.controllers.clone.plans import tmp_claim_name
from cdi.controllers.datavolume.transfer import Transfer, TransferWatch
from cdi.controllers.hostclone.podspec import owner_uid_of
from cdi.controllers.meta import annotations_of, is_deleting, name_of, namespace_of, uid_of
from cdi.controllers.progress import ProgressScraper, read_page
from cdi.controllers.upload.clonetarget import clone_source_of
from cdi.runtime.types import Clock


class Stage(enum.Enum):
    IDLE = "no host-assisted copy now"  # not a host-assisted clone, or not in (or past) its copy phase
    WAITING = "copy phase, source pod not running"  # waiting for the source, the upload server, a restart
    RUNNING = "source pod running"
    SUCCEEDED = "clone succeeded"


# How soon to look again: a running copy as often as imports; a waiting one only now and then (the claim's
# annotations change, and wake the DataVolume, when its source pod starts and reports progress).
REQUEUE: Final = {Stage.RUNNING: 2.0, Stage.WAITING: 10.0}


def copy_claim_key(claim: Object) -> tuple[str, str] | None:
    """(namespace, name) of the claim a host-assisted copy fills for the DataVolume's claim; None when no
    host-assisted copy is under way for it."""
    notes = annotations_of(claim)
    if ann.ANN_CLONE_REQUEST in notes:
        return namespace_of(claim), name_of(claim)
    if notes.get(ann.ANN_CLONE_PHASE) == ClonePhase.HOST_CLONE:
        return notes.get(ann.ANN_DATA_SOURCE_NAMESPACE) or namespace_of(claim), tmp_claim_name(uid_of(claim))
    return None


def source_pod_key(copy_claim: Object) -> tuple[str, str] | None:
    """(namespace, name) of the source pod that fills `copy_claim`."""
    source = clone_source_of(copy_claim)
    return (source[0], cp.source_pod_name(uid_of(copy_claim))) if source is not None else None


@dataclass(frozen=True)
class Seen:
    dv_phase: str  # the DataVolume's phase as last written
    claim: Object | None  # the DataVolume's claim
    copy_claim: Object | None  # the claim the copy fills (the same object in the fallback)
    pod: Object | None  # the copy's source pod


def _succeeded(claim: Object | None) -> bool:
    notes = annotations_of(claim) if claim is not None else {}
    return notes.get(ann.ANN_CLONE_PHASE) == ClonePhase.SUCCEEDED or (
        ann.ANN_CLONE_REQUEST in notes and notes.get(ann.ANN_POD_PHASE) == "Succeeded")


def stage(seen: Seen) -> Stage:
    if seen.dv_phase == "Succeeded" or _succeeded(seen.claim) or _succeeded(seen.copy_claim):
        return Stage.SUCCEEDED
    if seen.copy_claim is None or seen.dv_phase == "Failed":  # failed for good: nothing to watch or poll
        return Stage.IDLE
    status = (seen.pod or {}).get("status") or {}
    if seen.pod is not None and not is_deleting(seen.pod) and status.get("phase") == "Running" \
            and status.get("podIP"):
        return Stage.RUNNING
    return Stage.WAITING


def stall_hint(pod: Object) -> str:
    return (f"the clone source may not reach its target: see `cdi logs pod/{name_of(pod)} -n {namespace_of(pod)}`"
            " and the target's upload pod")


class HostCopyWatch:
    """Observes a clone DataVolume's host-assisted copy and applies what `progresswatch` decides."""

    def __init__(self, cluster: Cluster, clock: Clock, scraper: ProgressScraper | None,
                 stall_timeout: timedelta = pw.DEFAULT_STALL_TIMEOUT) -> None:
        self._cluster = cluster
        self._scraper = scraper
        self._transfers = TransferWatch(cluster, clock, stall_timeout)

    def forget(self, namespace: str, name: str) -> None:
        self._transfers.forget(namespace, name)

    async def observe(self, doc: Object, claim: Object | None) -> tuple[Stage, pw.StallPlan]:
        """The copy's stage, with the bytes annotations written when due, and the Stalled plan."""
        if self._scraper is None:
            return Stage.IDLE, pw.StallPlan(None)
        seen = await self._seen(doc, claim)
        now = stage(seen)
        if now is Stage.RUNNING:
            assert seen.pod is not None
            ip = str(seen.pod["status"]["podIP"])
            page = await read_page(self._scraper, ip, owner_uid_of(seen.pod))
            return now, await self._transfers.running(doc, Transfer(page, pw.Waiting.NO, stall_hint(seen.pod)))
        return now, await self._transfers.ended(doc, succeeded=now is Stage.SUCCEEDED)

    async def _seen(self, doc: Object, claim: Object | None) -> Seen:
        dv_phase = str((doc.get("status") or {}).get("phase") or "")
        key = copy_claim_key(claim) if claim is not None else None
        if claim is None or key is None:
            return Seen(dv_phase, claim, None, None)
        copy_claim = claim if key == (namespace_of(claim), name_of(claim)) else await get_or_none(
            self._cluster, "v1", "PersistentVolumeClaim", key[1], key[0])
        pod_key = source_pod_key(copy_claim) if copy_claim is not None else None
        pod = await get_or_none(self._cluster, "v1", "Pod", pod_key[1], pod_key[0]) if pod_key else None
        return Seen(dv_phase, claim, copy_claim, pod)
