"""The importer's termination message: what an importer pod leaves in its termination log.

Upstream's JSON (keys in upstream's order, each omitted when unset):
`scratchSpaceRequired`, `preallocationApplied`, `deadlinePassed`, `vddkInfo`, `labels`, `message`.
We add keys after `message`: `reason` and `retryable`, so that failures carry a machine-readable
reason across the process boundary and the controller never matches on message text; and
`resumeDecision` ("Resumed" or "StartedOver") with `resumeMessage`, set by an importer that found an
earlier attempt's checkpoint, which the controller records as an event on the claim. Upstream
writes failures as plain text; we always write JSON, and `parse` accepts both.
The importer writes it (`importer.main`); the DataVolume controller reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

MAX_LENGTH: Final = 4096
IMPORT_COMPLETE: Final = "Import Complete"
DEADLINE_PASSED: Final = "Deadline Passed"


class TerminationMessageTooLong(ValueError):
    """The serialised message exceeds the 4096 bytes Kubernetes keeps."""


@dataclass(frozen=True)
class TerminationMessage:
    message: str
    scratch_space_required: bool | None = None
    preallocation_applied: bool | None = None
    deadline_passed: bool | None = None
    vddk_info: dict[str, str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    retryable: bool | None = None
    resume_decision: str | None = None
    resume_message: str | None = None

    def to_json(self) -> str:
        doc: dict[str, Any] = {}
        if self.scratch_space_required is not None:
            doc["scratchSpaceRequired"] = self.scratch_space_required
        if self.preallocation_applied is not None:
            doc["preallocationApplied"] = self.preallocation_applied
        if self.deadline_passed is not None:
            doc["deadlinePassed"] = self.deadline_passed
        if self.vddk_info:
            doc["vddkInfo"] = self.vddk_info
        if self.labels:
            doc["labels"] = self.labels
        doc["message"] = self.message.replace("\n", " ")
        if self.reason is not None:
            doc["reason"] = self.reason
        if self.retryable is not None:
            doc["retryable"] = self.retryable
        if self.resume_decision is not None:
            doc["resumeDecision"] = self.resume_decision
            doc["resumeMessage"] = (self.resume_message or "").replace("\n", " ")
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) > MAX_LENGTH:
            raise TerminationMessageTooLong(
                f"Termination message length {len(text.encode())} exceeds maximum length of {MAX_LENGTH} bytes")
        return text

    @classmethod
    def parse(cls, text: str) -> TerminationMessage:
        """Read a termination log: our JSON, upstream's JSON, or upstream's plain-text failure."""
        text = text.strip()
        try:
            doc = json.loads(text) if text.startswith("{") else None
        except json.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return cls(message=text)
        return cls(
            message=str(doc.get("message", "")),
            scratch_space_required=_opt_bool(doc.get("scratchSpaceRequired")),
            preallocation_applied=_opt_bool(doc.get("preallocationApplied")),
            deadline_passed=_opt_bool(doc.get("deadlinePassed")),
            vddk_info=doc.get("vddkInfo") if isinstance(doc.get("vddkInfo"), dict) else None,
            labels=dict(doc.get("labels") or {}),
            reason=doc.get("reason") if isinstance(doc.get("reason"), str) else None,
            retryable=_opt_bool(doc.get("retryable")),
            resume_decision=_opt_str(doc.get("resumeDecision")),
            resume_message=_opt_str(doc.get("resumeMessage")),
        )


def _opt_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
