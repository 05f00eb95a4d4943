"""Hostile manifests cost milliseconds and one error line: alias bombs, recursive aliases, deep nesting,
too many documents and oversized sources are refused before anything is written."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cdi.cli.errors import ManifestProblem
from cdi.cli.manifests import MAX_DOCUMENTS, MAX_SOURCE_BYTES, parse_manifests
from tests.cli.conftest import Run

WriteFile = Callable[[str, str], str]


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", 'a: &a ["lol","lol","lol","lol","lol",'
             '"lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_on_one_line(cdi: Run, write_file: WriteFile) -> None:
    path = write_file("lol.yaml", billion_laughs())
    started = time.monotonic()
    result = cdi("apply", "-f", path)
    elapsed = time.monotonic() - started
    assert (result.code, result.out) == (1, "")
    assert result.err == (f"error: error parsing {path}: document 1 expands to more than 1000000 nodes through "
                          "YAML aliases; refused\n")
    assert elapsed < 1.0, f"refusing the alias bomb took {elapsed:.2f} s"  # about 5 ms unloaded
    assert cdi("get", "cm").err == "No resources found in default namespace.\n"


@pytest.mark.parametrize(("text", "problem"), [
    ("a: &a [*a]\n", "document 1 has a recursive YAML alias"),
    ("[" * 5000 + "]" * 5000, "nested more than 100 levels deep"),
    ("---\n{}\n" * (MAX_DOCUMENTS + 1), f"more than {MAX_DOCUMENTS} documents"),
    ("#" * (MAX_SOURCE_BYTES + 1), "larger than 16 MiB"),
])
def test_other_unbounded_input_is_refused(text: str, problem: str) -> None:
    started = time.monotonic()
    with pytest.raises(ManifestProblem) as refused:
        parse_manifests(text, "f.yaml")
    assert refused.value.message == f"error parsing f.yaml: {problem}"
    assert time.monotonic() - started < 3.0  # a few hundred ms unloaded


def test_ordinary_aliases_still_work() -> None:
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: &l {app: vm}, annotations: *l}\n"
            "data: {a: &v value, b: *v}\n")
    [manifest] = parse_manifests(text, "f.yaml")
    assert manifest.object["data"] == {"a": "value", "b": "value"}
    assert manifest.object["metadata"]["annotations"] == {"app": "vm"}
