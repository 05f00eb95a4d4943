"""Standard 5-field cron expressions, as DataImportCron's `schedule` uses them.

Accepts what upstream's parser (robfig/cron `ParseStandard`) accepts: minute, hour, day of month,
month, day of week; `*`, `?`, lists, ranges, steps, month and weekday names, and the `@hourly`-style
descriptors (`@every <duration>` is also accepted as a descriptor). `parse_cron` is used by admission
validation (`cdi.api.validation`); the DataImportCron controller can use the parsed field sets to find
the next run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class CronError(ValueError):
    """A schedule that is not a valid cron expression; the message says which field and why."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 6, _WEEKDAYS),
)


@dataclass(frozen=True)
class CronSchedule:
    """The allowed values of each field (an `@every` schedule has `every` set and full field sets)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    every: str | None = None


def parse_cron(expression: str) -> CronSchedule:
    """Parse a 5-field cron expression or descriptor; raises `CronError` naming the bad field."""
    text = expression.strip()
    if _EVERY.match(text):
        full = [frozenset(range(f.low, f.high + 1)) for f in _FIELDS]
        return CronSchedule(full[0], full[1], full[2], full[3], full[4], every=text.split(None, 1)[1])
    text = _DESCRIPTORS.get(text.lower(), text)
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    minutes, hours, days, months, weekdays = (
        _parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    return CronSchedule(minutes, hours, days, months, weekdays)


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for term in text.split(","):
        values |= _parse_term(term, spec)
    return frozenset(values)


def _parse_term(term: str, spec: _Field) -> set[int]:
    body, slash, step_text = term.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{spec.name}: bad step {step_text!r} in {term!r}")
        step = int(step_text)
    if body in ("*", "?"):
        low, high = spec.low, spec.high
    else:
        first, dash, last = body.partition("-")
        low = _value(first, spec)
        # "5/15" means from 5 to the end in steps of 15, as in robfig/cron.
        high = _value(last, spec) if dash else (spec.high if slash else low)
        if low > high:
            raise CronError(f"{spec.name}: range {body!r} runs backwards")
    return set(range(low, high + 1, step))


def _value(text: str, spec: _Field) -> int:
    number = spec.names.get(text.lower())
    if number is None:
        if not text.isdigit():
            raise CronError(f"{spec.name}: {text!r} is not a number")
        number = int(text)
    if not spec.low <= number <= spec.high:
        raise CronError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}")
    return number
