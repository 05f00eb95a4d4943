"""Progress a user can act on, as pure functions of the readings the DataVolume controllers scrape from a
worker (`cdi.controllers.progress`) and an injected `now`: bytes done and total, the rate over a sliding
window of readings, the ETA, and whether the transfer has stalled.

The controller keeps one `Track` per running transfer in memory, feeds it each reading (`advance`), and
asks `published` for the annotations to write (`cdi.contracts.annotations.TRANSFER_ANNOTATIONS`; the
DataVolume CRD is upstream's schema, so these are annotations, not status fields), `due` whether to write
them now (at most every `PUBLISH_INTERVAL`, and only when they changed meaningfully), and `stall` for the
`Stalled` condition and its events. A controller that restarts starts a fresh track: a transfer that is
stuck is found stalled one timeout after the restart, and a `Stalled=True` condition left from before is
cleared only by bytes that are seen to move, never by the lack of readings.

Beyond upstream, which shows only a percentage (and N/A for uploads)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Final

from cdi import goduration
from cdi.contracts import annotations as ann

WINDOW: Final = 30.0  # seconds of readings the rate is averaged over
PUBLISH_INTERVAL: Final = 5.0  # at most one annotation write per transfer this often
DEFAULT_STALL_TIMEOUT: Final = timedelta(minutes=10)
MEANINGFUL_SHARE: Final = 0.005  # of the total: smaller moves of bytes done wait for the next write
MEANINGFUL_BYTES: Final = 1 << 20  # when the total is unknown
MEANINGFUL_RATE: Final = 0.10  # relative change of the rate worth a write on its own

STALLED: Final = "Stalled"
REASON_STALLED: Final = "TransferStalled"
REASON_MOVING: Final = "TransferProgressing"
REASON_ENDED: Final = "TransferEnded"
MOVING_MESSAGE: Final = "bytes are moving again"
ENDED_MESSAGE: Final = "the transfer is no longer running"


@dataclass(frozen=True)
class Reading:
    """One scrape of a worker: `at` on the controller's monotonic clock (seconds)."""

    at: float
    done: int
    total: int | None = None
    percent: float | None = None


@dataclass(frozen=True)
class Track:
    """What the controller remembers of one transfer between reconciles."""

    readings: tuple[Reading, ...]
    started: float  # when the track began (the controller's first reading of this transfer)
    moved_at: float | None = None  # when done or percent last changed; None: not seen to move yet
    published_at: float | None = None


def advance(track: Track | None, reading: Reading, window: float = WINDOW) -> Track:
    """The track with `reading` added and readings older than `window` (keeping at least one before the
    newest) dropped. Bytes going backwards (the worker restarted) start the window over."""
    if track is None:
        return Track((reading,), reading.at)
    last = track.readings[-1]
    moved = (reading.done, reading.percent) != (last.done, last.percent)
    readings = (*track.readings, reading) if reading.done >= last.done else (reading,)
    while len(readings) > 2 and reading.at - readings[1].at >= window:
        readings = readings[1:]
    return replace(track, readings=readings, moved_at=reading.at if moved else track.moved_at)


@dataclass(frozen=True)
class Figures:
    done: int
    total: int | None
    rate: int | None  # bytes per second over the window; None with fewer than two readings
    eta: int | None  # seconds left at that rate; None without a total or a rate


def figures(track: Track) -> Figures:
    first, last = track.readings[0], track.readings[-1]
    total = last.total or next((r.total for r in reversed(track.readings) if r.total), None)
    span = last.at - first.at
    rate = round((last.done - first.done) / span) if span > 0 else None
    eta = None
    if total is not None and rate:
        eta = max(0, round((total - last.done) / rate))
    elif total is not None and rate == 0 and last.done >= total:
        eta = 0
    return Figures(last.done, total, rate, eta)


def published(f: Figures) -> dict[str, str | None]:
    """The annotations for `f`; None removes a key (no total, rate or ETA known). A worker that has counted
    nothing and knows no total (an upload not started; qemu-img converting in place, which moves only the
    percentage) publishes nothing: empty cells say more than "0 at 0B/s"."""
    def text(value: int | None) -> str | None:
        return None if value is None else str(value)

    if f.done == 0 and f.total is None:
        return dict.fromkeys(ann.TRANSFER_ANNOTATIONS)

    return {ann.ANN_TRANSFER_BYTES_DONE: str(f.done), ann.ANN_TRANSFER_BYTES_TOTAL: text(f.total),
            ann.ANN_TRANSFER_RATE: text(f.rate), ann.ANN_TRANSFER_ETA: text(f.eta)}


def changes(current: dict[str, str], wanted: dict[str, str | None]) -> dict[str, str | None]:
    """The keys of `wanted` that differ from the object's annotations."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def due(track: Track, now: float, current: dict[str, str], wanted: dict[str, str | None],
        interval: float = PUBLISH_INTERVAL) -> bool:
    """Whether to write `wanted` now: never twice within `interval`, never when nothing changed, and only
    for a meaningful change (bytes done by half a percent of the total, or a MiB without one; the rate by
    a tenth; a total, rate or ETA appearing or going)."""
    delta = changes(current, wanted)
    if not delta:
        return False
    if track.published_at is not None and now - track.published_at < interval:
        return False
    if any((current.get(k) is None) != (v is None) for k, v in delta.items()):
        return True
    total = _int(wanted.get(ann.ANN_TRANSFER_BYTES_TOTAL))
    step = total * MEANINGFUL_SHARE if total else MEANINGFUL_BYTES
    moved = abs(_int(wanted.get(ann.ANN_TRANSFER_BYTES_DONE)) - _int(current.get(ann.ANN_TRANSFER_BYTES_DONE)))
    old_rate, new_rate = _int(current.get(ann.ANN_TRANSFER_RATE)), _int(wanted.get(ann.ANN_TRANSFER_RATE))
    rate_changed = abs(new_rate - old_rate) > MEANINGFUL_RATE * max(old_rate, 1)
    return moved >= step or rate_changed or ann.ANN_TRANSFER_BYTES_TOTAL in delta


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class Waiting(enum.Enum):
    """Whether a transfer with no bytes yet is waiting on someone else (an upload's user), not stuck."""

    NO = "no"
    FOR_CLIENT = "for-client"


def stalled(track: Track, now: float, timeout: timedelta, waiting: Waiting = Waiting.NO) -> bool | None:
    """True: nothing moved for `timeout`; False: bytes moved within it; None: not known yet (a fresh track
    that has not seen movement, or an upload whose user has not started). A zero timeout turns the check
    off: never stalled."""
    if timeout <= timedelta(0):
        return False
    if waiting is Waiting.FOR_CLIENT and track.readings[-1].done == 0:
        return None
    last_change = track.moved_at if track.moved_at is not None else track.started
    if now - last_change >= timeout.total_seconds():
        return True
    return False if track.moved_at is not None else None


@dataclass(frozen=True)
class StallPlan:
    """The `Stalled` condition to publish ((status, reason, message), None: leave it as it is) and the
    event the transition deserves."""

    condition: tuple[str, str, str] | None
    event: tuple[str, str, str] | None = None


def stall_plan(previous: str | None, verdict: bool | None, f: Figures | None, timeout: timedelta,
               hint: str) -> StallPlan:
    """From the condition's previous status ("True", "False", None when absent) and `stalled`'s verdict.
    `hint` is where to look ("the source may be unreachable: see `cdi logs pod/importer-x`"). The messages
    do not carry the time since the last move, so the condition is written once per transition."""
    if verdict is True:
        where = human_bytes(f.done) if f is not None else "0"
        of = f" of {human_bytes(f.total)}" if f is not None and f.total is not None else ""
        message = f"no progress for {goduration.format(timeout.total_seconds())} at {where}{of}; {hint}"
        event = ("Warning", REASON_STALLED, message) if previous != "True" else None
        return StallPlan(("True", REASON_STALLED, message), event)
    if verdict is False and previous == "True":
        return StallPlan(("False", REASON_MOVING, MOVING_MESSAGE), ("Normal", REASON_MOVING, MOVING_MESSAGE))
    return StallPlan(None)


def ended(previous: str | None) -> StallPlan:
    """A transfer that is no longer running (done, failed, restarting) is not stalled any more."""
    return StallPlan(("False", REASON_ENDED, ENDED_MESSAGE)) if previous == "True" else StallPlan(None)


def stall_timeout(annotation: str | None, default: timedelta) -> tuple[timedelta, str | None]:
    """The DataVolume's own `ANN_STALL_TIMEOUT` when it is a Go duration ("0s": never stalled), else
    `default`; the second value says why an annotation was ignored."""
    if annotation is None:
        return default, None
    try:
        return goduration.parse(annotation.strip()), None
    except ValueError as e:
        return default, f"{ann.ANN_STALL_TIMEOUT}: {e}; using {goduration.format(default.total_seconds())}"


_UNITS: Final = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def human_bytes(count: int) -> str:
    """Binary units as `kubectl` users read them: "512", "1.2Gi", "45Mi" (one decimal under 10)."""
    if count < 1024:
        return str(count)
    value, index = count / 1024, 0
    while value >= 1024 and index < len(_UNITS) - 1:
        value, index = value / 1024, index + 1
    return f"{value:.1f}{_UNITS[index]}" if value < 10 else f"{value:.0f}{_UNITS[index]}"


def human_rate(rate: int) -> str:
    return f"{human_bytes(rate)}/s" if rate >= 1024 else f"{rate}B/s"


def human_eta(seconds: int) -> str:
    return goduration.format(seconds) if seconds >= 1 else "0s"
