"""Schedule arithmetic, pure: 5-field schedules, descriptors, `@every`, time zones and DST changes,
the names imports get, and the digests HTTP/S3 validators become."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cdi.api.cron import CronError
from cdi.controllers.dataimportcron.naming import DigestError, import_name, untagged_url, validator_digest
from cdi.controllers.dataimportcron.schedule import next_fire, parse_time, rfc3339, rfc3339_nano

NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("0 */12 * * *", utc(2026, 11, 21, 6), utc(2026, 11, 21, 12)),
    ("0 */12 * * *", utc(2026, 11, 21, 12), utc(2026, 11, 22, 0)),  # strictly after
    ("55 8/12 * * *", utc(2026, 1, 1), utc(2026, 1, 1, 8, 55)),  # the seeds' common-template schedule
    ("55 8/12 * * *", utc(2026, 1, 1, 9), utc(2026, 1, 1, 20, 55)),
    ("@daily", utc(2026, 1, 1, 5), utc(2026, 1, 2)),
    ("@hourly", utc(2026, 1, 1, 5, 30), utc(2026, 1, 1, 6)),
    ("@weekly", utc(2026, 11, 21), utc(2026, 11, 22)),  # a Sunday
    ("0 0 ? * MON", utc(2026, 11, 21), utc(2026, 11, 23)),
    ("0 0 1 jan *", utc(2026, 11, 21), utc(2027, 1, 1)),
    ("@every 90s", utc(2026, 1, 1), utc(2026, 1, 1, 0, 1, 30)),
    ("@every 1h30m", utc(2026, 1, 1), utc(2026, 1, 1, 1, 30)),
])
def test_next_fire(schedule: str, after: datetime, expected: datetime) -> None:
    assert next_fire(schedule, after) == expected


def test_spring_forward_runs_right_after_the_gap() -> None:
    # 2026-03-08 02:00 EST → 03:00 EDT: 02:30 does not exist that day.
    assert next_fire("30 2 * * *", utc(2026, 3, 8, 5), NEW_YORK) == utc(2026, 3, 8, 7)  # 03:00 EDT
    assert next_fire("30 2 * * *", utc(2026, 3, 8, 7), NEW_YORK) == utc(2026, 3, 9, 6, 30)  # 02:30 EDT


def test_fall_back_hour_fires_in_both_occurrences() -> None:
    # 2026-11-01 02:00 EDT → 01:00 EST: 01:30 happens twice.
    first = next_fire("30 1 * * *", utc(2026, 11, 1, 4), NEW_YORK)
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert next_fire("30 1 * * *", first, NEW_YORK) == utc(2026, 11, 1, 6, 30)  # 01:30 EST


def test_twelve_hourly_stays_on_wall_clock_across_dst() -> None:
    assert next_fire("0 */12 * * *", utc(2026, 11, 1, 4, 30), NEW_YORK) == utc(2026, 11, 1, 17)  # noon EST


@pytest.mark.parametrize("schedule", ["0 */12 * *", "61 * * * *", "* * * * * *", "@fortnightly"])
def test_invalid_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(CronError):
        next_fire(schedule, utc(2026, 1, 1))


def test_timestamps() -> None:
    moment = utc(2026, 11, 21, 6, 0, 1)
    assert rfc3339(moment) == "2026-11-21T06:00:01Z"
    assert rfc3339_nano(moment) == "2026-11-21T06:00:01.000000Z"
    assert parse_time("2026-11-21T07:00:01+01:00") == moment
    assert parse_time("not a time") is None and parse_time(None) is None


def test_import_names_follow_upstream() -> None:
    assert import_name("centos7", "sha256:0123456789abcdef" + "0" * 48) == "centos7-0123456789ab"
    assert import_name("fedora", "uid:6e2b3c4d-aaaa-bbbb") == "fedora-6e2b3c4d-aaa"
    long = import_name("d" * 250, "sha256:" + "a" * 64)
    assert len(long) == 253 and long.endswith("-aaaaaaaaaaaa")
    with pytest.raises(DigestError):
        import_name("fedora", "md5:0123456789abcdef")
    with pytest.raises(DigestError):
        import_name("fedora", "sha256:0123")


def test_registry_urls_are_pinned_without_their_tag() -> None:
    digest = "sha256:" + "b" * 64
    assert untagged_url("docker://quay.io/containerdisks/centos:7-2009", digest) == \
        f"docker://quay.io/containerdisks/centos@{digest}"
    assert untagged_url("docker://127.0.0.1:5000/disks/fedora", digest) == f"docker://127.0.0.1:5000/disks/fedora@{digest}"


def test_validators_become_sha256_digests() -> None:
    one = validator_digest("http://h/disk.img", 'etag:"1"')
    assert one.startswith("sha256:") and len(one) == 71
    assert one != validator_digest("http://h/disk.img", 'etag:"2"')
    assert one == validator_digest("http://h/disk.img", 'etag:"1"')
