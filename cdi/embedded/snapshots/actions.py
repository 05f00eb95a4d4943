"""The actions and plan shape shared by the snapshot controller's two planners
(`cdi.embedded.snapshots.plan` for VolumeSnapshots, `cdi.embedded.snapshots.content_plan` for
VolumeSnapshotContents), and the small pure helpers both use. `cdi.embedded.snapshots.controller`
applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cdi.cluster.protocol import Object
from cdi.embedded.volumes.pool import VolumeInfo


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class SetFinalizers:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def applied_to(self, finalizers: list[str]) -> list[str]:
        """The list once this change is made to `finalizers` (as the object is when it is written)."""
        kept = [name for name in finalizers if name not in self.remove]
        return kept + [name for name in self.add if name not in kept]


@dataclass(frozen=True)
class SetClassName:
    name: str


@dataclass(frozen=True)
class CreateContent:
    name: str
    driver: str
    deletion_policy: str
    class_name: str
    volume_handle: str
    volume_mode: str


@dataclass(frozen=True)
class BindContent:
    name: str  # the pre-provisioned content whose volumeSnapshotRef gets this snapshot's uid


@dataclass(frozen=True)
class DeleteContent:
    name: str


@dataclass(frozen=True)
class ProtectClaim:
    add: bool  # add (True) or remove (False) the pvc-as-source-protection finalizer of the source claim


@dataclass(frozen=True)
class SetStatus:
    status: Object  # the whole desired status (merge-patched)


@dataclass(frozen=True)
class TakeSnapshot:
    volume: VolumeInfo
    handle: str
    in_use: bool


@dataclass(frozen=True)
class DeleteSnapshotData:
    handle: str


SnapshotAction = (Event | SetFinalizers | SetClassName | CreateContent | BindContent | DeleteContent | SetStatus
                  | ProtectClaim)
ContentAction = Event | SetFinalizers | SetStatus | TakeSnapshot | DeleteSnapshotData | DeleteContent


@dataclass(frozen=True)
class Plan:
    actions: tuple[SnapshotAction | ContentAction, ...] = ()
    requeue: bool = False  # waiting for something no watch reports (a claim to bind)


def rfc3339(nanoseconds: int) -> str:
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_finalizers(finalizers: tuple[str, ...], *wanted: str) -> SetFinalizers | None:
    missing = tuple(name for name in wanted if name not in finalizers)
    return SetFinalizers(add=missing) if missing else None


def without_finalizers(finalizers: tuple[str, ...], *unwanted: str) -> SetFinalizers | None:
    present = tuple(name for name in unwanted if name in finalizers)
    return SetFinalizers(remove=present) if present else None
