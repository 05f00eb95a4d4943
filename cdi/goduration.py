"""Go's `time.Duration` text, which Kubernetes and CDI use in their APIs and messages ("48h", "1h30m",
"500ms"): `parse` reads it strictly, `format` writes it as Go's `Duration.String` does.

One place for what the CDI resource's `certConfig`, DataImportCron's `@every`, kubectl-style flags and
kubelet's back-off message all share."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> timedelta:
    """A Go duration ("48h", "1h30m", "90s", "250ms"); ValueError, saying what is expected, otherwise."""
    position, seconds = 0, 0.0
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            break
        seconds += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration such as 48h or 1h30m")
    return timedelta(seconds=seconds)


def format(seconds: float) -> str:
    """A duration as Go prints it ("10s", "2m40s", "5m0s", "200ms")."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:g}s"
    if minutes:
        hours, minutes = divmod(int(minutes), 60)
        text = f"{minutes}m{text}" if not hours else f"{hours}h{minutes}m{text}"
    return text
