"""The CLI's small parsers: kubectl durations and booleans, JSONPath, `--for` conditions, manifests."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from cdi.cli.errors import ManifestProblem
from cdi.cli.flags import parse_bool, parse_duration
from cdi.cli.jsonpath import JsonPathError, compile_path, render_value
from cdi.cli.manifests import parse_manifests
from cdi.cli.wait import WaitFor, parse_for

DV: dict[str, Any] = {
    "metadata": {"name": "fedora", "labels": {"app.kubernetes.io/name": "vm"}, "generation": 2},
    "status": {"phase": "Succeeded", "progress": "100.0%", "restartCount": 0,
               "conditions": [{"type": "Bound", "status": "True", "observedGeneration": 2},
                              {"type": "Ready", "status": "False", "reason": "TransferRunning"},
                              {"type": "Running", "status": "True", "observedGeneration": 1}]},
}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5s", 1.5),
    ("45", 45.0), ("0", 0.0), ("2m0.5s", 120.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-5s", "5x", "1h-2m", "soon", "inf", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_booleans() -> None:
    assert [parse_bool(v) for v in ("true", "False", "1", "0")] == [True, False, True, False]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool("maybe")


@pytest.mark.parametrize(("path", "expected"), [
    (".status.phase", ["Succeeded"]),
    ("{.status.progress}", ["100.0%"]),
    ("{.status.restartCount}", [0]),
    (".status.missing", []),
    (".metadata.labels['app.kubernetes.io/name']", ["vm"]),
    ('{.status.conditions[?(@.type=="Ready")].status}', ["False"]),
    ("{.status.conditions[?(@.type!='Ready')].type}", ["Bound", "Running"]),
    (".status.conditions[*].type", ["Bound", "Ready", "Running"]),
    (".status.conditions[-1].type", ["Running"]),
    (".status.conditions[7].type", []),
    ("$.metadata.name", ["fedora"]),
    ("{.status.conditions[?(@.reason)].type}", ["Ready"]),
    ("{..reason}", ["TransferRunning"]),  # recursive descent: every nested object, then the field
    ("{.status..type}", ["Bound", "Ready", "Running"]),
    ("{..conditions[0].type}", ["Bound"]),
    ("{.metadata..name}", ["fedora"]),  # the starting object itself is searched too, as kubectl does
])
def test_jsonpath(path: str, expected: list[Any]) -> None:
    assert compile_path(path).find(DV) == expected


def test_jsonpath_rejects_what_it_does_not_support() -> None:
    with pytest.raises(JsonPathError):
        compile_path("{.status.conditions[?x]}")


@pytest.mark.parametrize(("value", "text"), [
    ("a", "a"), (3, "3"), (2.0, "2"), (0.5, "0.5"), (True, "true"), (None, ""), ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
])
def test_render_value(value: Any, text: str) -> None:
    assert render_value(value) == text


@pytest.mark.parametrize(("flag", "met"), [
    ("condition=Bound", True),
    ("condition=bound=true", True),
    ("condition=Ready", False),
    ("condition=Ready=False", True),
    ("condition=Running", False),  # observed an older generation
    ("condition=Missing", False),
    ("condition=Missing=False", False),
    ("jsonpath={.status.phase}=Succeeded", True),
    ("jsonpath={.status.phase}=Failed", False),
    ("jsonpath={.status.restartCount}=0", True),
    ('jsonpath={.status.conditions[?(@.type=="Ready")].reason}=TransferRunning', True),
    ("jsonpath={.status.claimName}", False),
    ("jsonpath={.status.progress}", True),
    ("jsonpath=.status.phase=Succeeded", True),
    ("create", True),
    ("delete", False),
])
def test_wait_conditions(flag: str, met: bool) -> None:
    assert parse_for(flag).met(DV) is met


def test_wait_for_delete_is_met_by_absence_or_a_new_uid() -> None:
    gone = parse_for("delete")
    assert gone.met(None)
    assert gone.met({"metadata": {"uid": "new"}}, uid="old")
    assert not gone.met({"metadata": {"uid": "old"}}, uid="old")
    assert not WaitFor("condition", condition="Ready").met(None)


@pytest.mark.parametrize("flag", ["", "condition", "condition=", "jsonpath=", "jsonpath={.status", "ready",
                                  "jsonpath={.status.phase}Succeeded", "delete=now"])
def test_bad_wait_conditions(flag: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_for(flag)


def test_manifests_multi_document_lists_and_plain_timestamps() -> None:
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: a, creationTimestamp: 2024-05-01T12:00:00Z}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
"""
    found = parse_manifests(text, "f.yaml")
    assert [(m.document, m.name) for m in found] == [(1, "a"), (3, "b"), (3, "c")]
    assert found[0].object["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(("text", "message"), [
    ("kind: ConfigMap\nmetadata:\n  name: a\n  labels: [\n", "error parsing f.yaml: line 5, column 1:"),
    ("a: b\n  c: d\n", "error parsing f.yaml: line 2, column 4: mapping values are not allowed here"),
    ("- just\n- a list\n", 'error validating "f.yaml" (document 1): expected an object, got list'),
    ("metadata: {name: x}\n", 'error validating "f.yaml" (document 1): apiVersion not set, kind not set'),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: nope\n", "metadata must be an object"),
])
def test_manifest_problems(text: str, message: str) -> None:
    with pytest.raises(ManifestProblem) as caught:
        parse_manifests(text, "f.yaml")
    assert message in caught.value.message
