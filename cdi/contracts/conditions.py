"""Condition reasons that tell a client an object will not progress as it stands.

The controllers write them (the DataVolume controller for a source kind that is not implemented, the
`NotSupported` reconciler for kinds stored but not acted on); `cdi wait` reads them to fail fast
instead of waiting out its timeout. Written once here so neither side spells the strings.
"""

from __future__ import annotations

from typing import Final

# The object asks for something this CDI does not implement yet; nothing will happen until it does.
NOT_SUPPORTED: Final = "NotSupported"

# Reasons on a DataVolume's `Ready` condition after which waiting for it is pointless.
WONT_PROGRESS_REASONS: Final = frozenset({NOT_SUPPORTED})


def wont_progress(obj: dict[str, object]) -> tuple[str, str] | None:
    """(reason, message) when `obj` says it will not progress: phase Failed, or a won't-progress reason.

    Pure: reads only `status.phase` and `status.conditions`; None when the object may still progress.
    """
    status = obj.get("status")
    if not isinstance(status, dict):
        return None
    conditions = status.get("conditions")
    for entry in conditions if isinstance(conditions, list) else ():
        if isinstance(entry, dict) and entry.get("reason") in WONT_PROGRESS_REASONS and entry.get("status") != "True":
            return str(entry["reason"]), str(entry.get("message", ""))
    if status.get("phase") == "Failed":
        for entry in conditions if isinstance(conditions, list) else ():
            if isinstance(entry, dict) and entry.get("type") == "Running" and entry.get("reason"):
                return str(entry["reason"]), str(entry.get("message", ""))
        return "Failed", "the DataVolume failed"
    return None
