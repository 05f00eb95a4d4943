"""DataImportCron schedules: what a 5-field cron expression means, and what is rejected."""

from __future__ import annotations

import pytest

from cdi.api import CronError, parse_cron


def test_docs_schedule_runs_twice_a_day() -> None:
    schedule = parse_cron("55 8/12 * * *")
    assert schedule.minutes == {55}
    assert schedule.hours == {8, 20}
    assert schedule.days_of_month == set(range(1, 32))


def test_steps_lists_ranges_and_names() -> None:
    schedule = parse_cron("*/15 0-6/3,23 1,15 jan-mar MON-FRI")
    assert schedule.minutes == {0, 15, 30, 45}
    assert schedule.hours == {0, 3, 6, 23}
    assert schedule.days_of_month == {1, 15}
    assert schedule.months == {1, 2, 3}
    assert schedule.days_of_week == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(("descriptor", "equivalent"), [
    ("@daily", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"), ("@yearly", "0 0 1 1 *"),
])
def test_descriptors(descriptor: str, equivalent: str) -> None:
    assert parse_cron(descriptor) == parse_cron(equivalent)


def test_every_duration_is_accepted() -> None:
    assert parse_cron("@every 1h30m").every == "1h30m"


@pytest.mark.parametrize(("expression", "reason"), [
    ("* * * *", "expected 5 fields"),
    ("* * * * * *", "expected 5 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 24 * * *", "hour: 24 is outside 0-23"),
    ("* * 0 * *", "day of month: 0 is outside 1-31"),
    ("* * * 13 *", "month: 13 is outside 1-12"),
    ("* * * * 7", "day of week: 7 is outside 0-6"),
    ("*/0 * * * *", "minute: bad step '0'"),
    ("5-1 * * * *", "minute: range '5-1' runs backwards"),
    ("x * * * *", "minute: 'x' is not a number"),
])
def test_invalid_expressions_name_the_field(expression: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        parse_cron(expression)
