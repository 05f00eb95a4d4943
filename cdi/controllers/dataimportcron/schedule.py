"""When a DataImportCron polls next: cron arithmetic, pure.

Admission validates schedules with our strict 5-field parser (`cdi.api.cron`, robfig/cron's
`ParseStandard` grammar); this module computes fire times with croniter, a maintained cron library,
after the same validation. `@every <duration>` (which robfig/cron accepts and croniter does not) is
computed here: the previous run plus the duration.

Time zone: schedules are evaluated in the controller's zone (`zone`, UTC unless the entrypoint says
otherwise), as Kubernetes' CronJob controller evaluates them in kube-controller-manager's zone. Around
daylight-saving changes we follow croniter (Vixie cron's rule): a wall-clock time skipped by the
spring-forward gap fires at the first instant after the gap, and a time in the repeated fall-back hour
fires in both occurrences (for a poll that is one harmless extra look at the source). Times written
to annotations are RFC 3339 in UTC. Used by `cdi.controllers.dataimportcron.plan`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

from cdi import goduration
from cdi.api.cron import CronError, parse_cron

# robfig/cron rounds `@every` below one second up to one second.
_MIN_EVERY = timedelta(seconds=1)


def every_interval(text: str) -> timedelta:
    """A Go duration (`90s`, `1h30m`) as a timedelta."""
    return max(goduration.parse(text), _MIN_EVERY)


def next_fire(schedule: str, after: datetime, zone: tzinfo = UTC) -> datetime:
    """The first time strictly after `after` that `schedule` fires, in UTC; `CronError` if invalid."""
    parsed = parse_cron(schedule)
    if parsed.every is not None:
        return (after + every_interval(parsed.every)).astimezone(UTC)
    text = schedule.strip()
    local = after.astimezone(zone)
    try:
        fire: datetime = croniter(text.lower() if text.startswith("@") else text, local).get_next(datetime)
    except (ValueError, KeyError) as e:  # parse_cron accepted it: a croniter limitation, said plainly
        raise CronError(f"cannot compute the next run of {schedule!r}: {e}") from e
    return fire.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """`2026-11-21T06:00:00Z`: the form of `nextCronTime` and `lastCronTime`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(moment: datetime) -> str:
    """`2026-11-21T06:00:00.123456Z`: the form of `lastUseTime`, which orders imports for GC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (with or without fraction, `Z` or an offset); None if absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
