"""How the CLI shows times: kubectl's human durations ("5s", "3m2s", "4h", "2d") and object ages.

Pure functions of a timestamp and an injected `now`, used by `cdi.cli.columns` (AGE, LAST SEEN) and
`cdi.cli.describe` (event ages). Matches apimachinery's `duration.HumanDuration`, including its
rounding and its tolerance of two seconds of clock skew.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

UNKNOWN = "<unknown>"


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints it: more precision for short spans, less for long ones."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return _pair(minutes, "m", whole % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _pair(hours // 24 // 365, "y", hours // 24 % 365, "d")
    return f"{hours // 24 // 365}y"


def _pair(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    return f"{major}{major_unit}{minor}{minor_unit}" if minor else f"{major}{major_unit}"


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from an object ("2024-05-01T12:00:00Z"), or None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def since(value: Any, now: datetime) -> str:
    """How long ago `value` (a timestamp string) was, as kubectl's AGE column shows it."""
    moment = parse_timestamp(value)
    if moment is None:
        return UNKNOWN
    return human_duration((now - moment).total_seconds())
