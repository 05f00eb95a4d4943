"""kubectl's human durations and ages, checked against the values apimachinery's HumanDuration gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdi.cli.ages import human_duration, parse_timestamp, since

NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "expected"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (4 * 3600 + 5 * 60, "4h5m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (2 * 86400 + 5 * 3600, "2d5h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (2 * 365 * 86400, "2y"), (3 * 365 * 86400 + 10 * 86400, "3y10d"),
    (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_since_reads_rfc3339_and_marks_missing_times_unknown() -> None:
    assert since("2024-05-10T11:56:58Z", NOW) == "3m2s"
    assert since("2024-05-05T12:00:00+00:00", NOW) == "5d"
    assert since(None, NOW) == "<unknown>"
    assert since("yesterday", NOW) == "<unknown>"
    assert parse_timestamp("2024-05-10T12:00:00") == NOW
