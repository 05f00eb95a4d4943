"""The DataImportCron's conditions and status fields, with upstream's reasons and messages; pure.

Condition bookkeeping follows upstream's `updateConditionState`: `lastTransitionTime` moves when the
status flips, `lastHeartbeatTime` when the reason or message changes, so a reconcile that finds
nothing new writes nothing (and does not wake itself through its own watch). Used by `plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

PROGRESSING: Final = "Progressing"
UP_TO_DATE: Final = "UpToDate"

# Reasons, as upstream spells them.
SCHEDULED: Final = "ImportScheduled"
IN_PROGRESS: Final = "ImportProgressing"
NO_IMPORT: Final = "NoImport"
OUTDATED: Final = "Outdated"
UPDATED: Final = "UpToDate"
NO_DIGEST: Final = "NoDigest"


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool
    message: str
    reason: str


def progressing(status: bool, message: str, reason: str) -> ConditionUpdate:
    return ConditionUpdate(PROGRESSING, status, message, reason)


def up_to_date(status: bool, message: str, reason: str) -> ConditionUpdate:
    return ConditionUpdate(UP_TO_DATE, status, message, reason)


def apply_condition(conditions: list[dict[str, Any]], update: ConditionUpdate, now: str) -> list[dict[str, Any]]:
    """`conditions` with `update` applied (a new list; the others untouched and in order)."""
    wanted = "True" if update.status else "False"
    result = [dict(c) for c in conditions]
    current = next((c for c in result if c.get("type") == update.type), None)
    if current is None:
        current = {"type": update.type}
        result.append(current)
    if current.get("status") != wanted:
        current["status"] = wanted
        current["lastTransitionTime"] = now
    if current.get("reason") != update.reason or current.get("message") != update.message:
        current["reason"], current["message"] = update.reason, update.message
        current["lastHeartbeatTime"] = now
    current.setdefault("lastTransitionTime", now)
    current.setdefault("lastHeartbeatTime", now)
    return result


def condition_of(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)
