"""The termination message and metric line formats other processes parse."""

import json

import pytest

from cdi.contracts.metrics import format_progress, parse_progress, progress_line
from cdi.contracts.termination import TerminationMessage, TerminationMessageTooLong


def test_success_message_matches_upstream_json() -> None:
    text = TerminationMessage("Import Complete", scratch_space_required=False, preallocation_applied=True).to_json()
    assert text == '{"scratchSpaceRequired":false,"preallocationApplied":true,"message":"Import Complete"}'


def test_failure_message_carries_reason_after_upstream_keys() -> None:
    text = TerminationMessage("Unable to process data: x\ny", reason="UnsafeImage", retryable=False).to_json()
    assert list(json.loads(text)) == ["message", "reason", "retryable"]
    assert "\n" not in text


def test_too_long_message_is_refused() -> None:
    with pytest.raises(TerminationMessageTooLong):
        TerminationMessage("x", labels={f"k{i}": "v" * 100 for i in range(50)}).to_json()


@pytest.mark.parametrize("text", [
    '{"scratchSpaceRequired":true,"preallocationApplied":false,"message":"Import Complete"}',
    "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found",
    '{"message":"Unable to process data: checksum mismatch","reason":"ChecksumError","retryable":false}',
])
def test_parse_round_trips(text: str) -> None:
    message = TerminationMessage.parse(text)
    assert message.message in text
    if text.startswith("{"):
        assert json.loads(message.to_json()) == json.loads(text)


def test_progress_line_is_read_by_the_controller_regex() -> None:
    page = "# HELP x\n" + progress_line("kubevirt_cdi_import_progress_total", "uid-1", 45.339) + "\n"
    assert parse_progress(page, "uid-1") == 45.34
    assert parse_progress(page, "other") is None
    assert format_progress(45.339) == "45.34%"
