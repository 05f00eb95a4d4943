"""Progress a user can act on, as tables of readings and an injected `now` (seconds on the controller's
monotonic clock): the rate over the window, the ETA, what gets published and when, and the stall
decision with its condition and events."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce

import pytest

from cdi.contracts import annotations as ann
from cdi.controllers import progresswatch as pw

GI, MI = 1 << 30, 1 << 20
TEN_MINUTES = timedelta(minutes=10)


def track_of(*readings: tuple[float, int], total: int | None = 4 * GI) -> pw.Track:
    start: pw.Track | None = None
    return reduce(lambda t, r: pw.advance(t, pw.Reading(r[0], r[1], total)), readings, start)  # type: ignore[arg-type]


@pytest.mark.parametrize(("readings", "total", "rate", "eta"), [
    ([(0.0, 0)], 4 * GI, None, None),  # one reading: no rate yet
    ([(0.0, 0), (10.0, 450 * MI)], 4 * GI, 45 * MI, round((4 * GI - 450 * MI) / (45 * MI))),
    ([(0.0, 0), (10.0, 100 * MI)], None, 10 * MI, None),  # no total: a rate but no ETA
    # the window keeps the last 30 s: an early burst no longer counts
    ([(0.0, 0), (10.0, 1 * GI), (20.0, GI + 10 * MI), (50.0, GI + 40 * MI)], 4 * GI, MI, 4096 - 1024 - 40),
    ([(0.0, GI), (10.0, GI)], 4 * GI, 0, None),  # stuck: rate 0, no ETA
    ([(0.0, 4 * GI - MI), (1.0, 4 * GI)], 4 * GI, MI, 0),
    ([(0.0, 2 * GI), (10.0, 100 * MI)], 4 * GI, None, None),  # went backwards (worker restarted): start over
])
def test_rate_and_eta(readings: list[tuple[float, int]], total: int | None, rate: int | None, eta: int | None) -> None:
    f = pw.figures(track_of(*readings, total=total))
    assert (f.done, f.total, f.rate, f.eta) == (readings[-1][1], total, rate, eta)


def test_published_annotations_are_integers_and_unknowns_are_removed() -> None:
    assert pw.published(pw.Figures(1288490188, 4 * GI, 47185920, 70)) == {
        ann.ANN_TRANSFER_BYTES_DONE: "1288490188", ann.ANN_TRANSFER_BYTES_TOTAL: str(4 * GI),
        ann.ANN_TRANSFER_RATE: "47185920", ann.ANN_TRANSFER_ETA: "70"}
    assert pw.published(pw.Figures(5, None, None, None))[ann.ANN_TRANSFER_ETA] is None
    assert set(pw.published(pw.Figures(0, None, 0, None)).values()) == {None}  # nothing counted, nothing known


def notes(done: int, rate: int | None = 10 * MI, total: int = 4 * GI) -> dict[str, str]:
    return {k: v for k, v in pw.published(pw.Figures(done, total, rate, None)).items() if v is not None}


@pytest.mark.parametrize(("published_at", "now", "current", "wanted", "expected"), [
    (None, 0.0, {}, notes(MI, None), True),  # first publication
    (None, 0.0, notes(GI), notes(GI), False),  # identical content: never written
    (10.0, 12.0, notes(GI), notes(2 * GI), False),  # within the interval: wait
    (10.0, 15.0, notes(GI), notes(2 * GI), True),
    (10.0, 15.0, notes(GI), notes(GI + MI), False),  # under half a percent of 4 GiB and the same rate
    (10.0, 15.0, notes(GI), notes(GI + MI, rate=20 * MI), True),  # the rate doubled
    (10.0, 15.0, notes(GI), notes(GI + MI, rate=10 * MI + 1000), False),  # the rate barely moved
    (10.0, 15.0, notes(GI, None), notes(GI), True),  # a rate appears
])
def test_when_annotations_are_written(published_at: float | None, now: float, current: dict[str, str],
                                      wanted: dict[str, str], expected: bool) -> None:
    track = pw.Track((pw.Reading(now, 0),), 0.0, published_at=published_at)
    assert pw.due(track, now, current, dict(wanted)) is expected


@pytest.mark.parametrize(("readings", "now", "waiting", "expected"), [
    ([(0.0, 0)], 10.0, pw.Waiting.NO, None),  # fresh track: nothing known
    ([(0.0, 0)], 600.0, pw.Waiting.NO, True),  # nothing moved since the controller began watching
    ([(0.0, 0), (5.0, MI)], 300.0, pw.Waiting.NO, False),  # moved 295 s ago
    ([(0.0, 0), (5.0, MI), (400.0, MI)], 604.0, pw.Waiting.NO, False),
    ([(0.0, 0), (5.0, MI), (400.0, MI)], 605.0, pw.Waiting.NO, True),  # 600 s since the last move
    ([(0.0, 0), (900.0, 0)], 900.0, pw.Waiting.FOR_CLIENT, None),  # an upload whose user has not started
    ([(0.0, 0), (5.0, MI), (900.0, MI)], 900.0, pw.Waiting.FOR_CLIENT, True),  # its client stopped midway
])
def test_stall_decision(readings: list[tuple[float, int]], now: float, waiting: pw.Waiting,
                        expected: bool | None) -> None:
    assert pw.stalled(track_of(*readings), now, TEN_MINUTES, waiting) is expected


def test_a_zero_timeout_never_stalls() -> None:
    assert pw.stalled(track_of((0.0, 0)), 1e6, timedelta(0)) is False


def test_percent_moving_counts_as_progress() -> None:
    """qemu-img converting from scratch space moves the percentage, not the downloaded bytes."""
    track = pw.advance(pw.advance(None, pw.Reading(0.0, GI, GI, 50.0)), pw.Reading(590.0, GI, GI, 70.0))
    assert pw.stalled(track, 700.0, TEN_MINUTES) is False


HINT = "the source may be unreachable: see `cdi logs pod/importer-fedora -n default`"
STUCK = pw.Figures(int(1.2 * GI), 4 * GI, 0, None)


@pytest.mark.parametrize(("previous", "verdict", "condition", "event"), [
    (None, None, None, None),
    (None, False, None, None),  # never stalled: no condition at all
    (None, True, ("True", "TransferStalled",
                  f"no progress for 10m0s at 1.2Gi of 4.0Gi; {HINT}"), "Warning"),
    ("True", True, ("True", "TransferStalled", f"no progress for 10m0s at 1.2Gi of 4.0Gi; {HINT}"), None),
    ("True", None, None, None),  # no evidence either way: leave it
    ("True", False, ("False", "TransferProgressing", "bytes are moving again"), "Normal"),
    ("False", False, None, None),
    ("False", True, ("True", "TransferStalled", f"no progress for 10m0s at 1.2Gi of 4.0Gi; {HINT}"), "Warning"),
])
def test_stalled_condition_and_one_event_per_transition(previous: str | None, verdict: bool | None,
                                                        condition: tuple[str, str, str] | None,
                                                        event: str | None) -> None:
    plan = pw.stall_plan(previous, verdict, STUCK, TEN_MINUTES, HINT)
    assert plan.condition == condition
    assert (plan.event[0] if plan.event else None) == event
    if plan.event:
        assert plan.event[1:] == plan.condition[1:]  # type: ignore[index]


def test_an_ended_transfer_is_not_stalled() -> None:
    assert pw.ended("True").condition == ("False", "TransferEnded", "the transfer is no longer running")
    assert pw.ended(None).condition is None and pw.ended("False").condition is None


@pytest.mark.parametrize(("annotation", "timeout", "problem"), [
    (None, TEN_MINUTES, None),
    ("15m", timedelta(minutes=15), None),
    ("90s", timedelta(seconds=90), None),
    ("soon", TEN_MINUTES, "pycdi.io/stallTimeout: 'soon' is not a duration such as 48h or 1h30m; using 10m0s"),
    ("0s", timedelta(0), None),  # off for this DataVolume
])
def test_stall_timeout_per_data_volume(annotation: str | None, timeout: timedelta, problem: str | None) -> None:
    assert pw.stall_timeout(annotation, TEN_MINUTES) == (timeout, problem)


@pytest.mark.parametrize(("count", "text"), [
    (0, "0"), (1023, "1023"), (1536, "1.5Ki"), (45 * MI, "45Mi"), (int(1.2 * GI), "1.2Gi"), (4 * GI, "4.0Gi"),
    (3 * (1 << 40), "3.0Ti"),
])
def test_human_bytes(count: int, text: str) -> None:
    assert pw.human_bytes(count) == text


def test_human_rate_and_eta() -> None:
    assert (pw.human_rate(45 * MI), pw.human_rate(300), pw.human_eta(70), pw.human_eta(0)) == (
        "45Mi/s", "300B/s", "1m10s", "0s")
