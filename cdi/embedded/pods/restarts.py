"""What happens to an exited container: kubelet's restart policy and crash-loop back-off, pure.

As kubelet: a container that exited is restarted under `Always`, under `OnFailure` when its exit code
is non-zero, never under `Never`. The first restart is immediate; each later one waits the current
back-off, counted from when the container finished, which starts at `base` (10 s) and doubles up to
`cap` (5 min). A container that finished more than `2 * cap` (10 min) after the previous back-off
was recorded starts over at `base`, i.e. a container that ran ten minutes is forgiven its crashes.
While it waits, it is `waiting{reason: CrashLoopBackOff}` with kubelet's message (`status`).
`decide` is called by the runner with monotonic times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdi import goduration

RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER = "Always", "OnFailure", "Never"


@dataclass(frozen=True)
class BackoffPolicy:
    base: float = 10.0
    cap: float = 300.0

    @property
    def reset_after(self) -> float:
        return 2 * self.cap


@dataclass(frozen=True)
class Backoff:
    """One container's back-off entry: the delay now in force and when it was last moved on."""

    delay: float
    updated: float


@dataclass(frozen=True)
class Decision:
    action: Literal["restart", "wait", "stay"]
    wait: float = 0.0  # seconds left, for "wait"
    backoff: Backoff | None = None  # the entry after a "restart"


def wants_restart(policy: str, exit_code: int) -> bool:
    return policy == RESTART_ALWAYS or (policy == RESTART_ON_FAILURE and exit_code != 0)


def decide(policy: str, exit_code: int, finished: float, entry: Backoff | None, now: float,
           backoff: BackoffPolicy) -> Decision:
    """Restart now (and the new back-off entry), wait `wait` more seconds, or stay terminated."""
    if not wants_restart(policy, exit_code):
        return Decision("stay")
    if entry is not None and not _expired(entry, finished, backoff):
        remaining = entry.delay - (now - finished)
        if remaining > 0:
            return Decision("wait", wait=remaining)
    return Decision("restart", backoff=next_backoff(entry, finished, backoff))


def next_backoff(entry: Backoff | None, finished: float, backoff: BackoffPolicy) -> Backoff:
    if entry is None or _expired(entry, finished, backoff):
        return Backoff(backoff.base, finished)
    return Backoff(min(entry.delay * 2, backoff.cap), finished)


def _expired(entry: Backoff, finished: float, backoff: BackoffPolicy) -> bool:
    return finished - entry.updated > backoff.reset_after


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, for kubelet's back-off message."""
    return goduration.format(seconds)
