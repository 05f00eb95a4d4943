"""The small JSONPath subset `cdi get` and `cdi wait` need, as kubectl's printer columns and
`--for=jsonpath=` use it.

Supported: `.field` steps (with or without the enclosing `{...}` and a leading `$`), `['key']` for keys
with dots or slashes, `[N]` indexes (negative from the end), `[*]` / `.*` wildcards, `..` recursive
descent (`{.items..status.phase}`: every nested object, then the field, as kubectl walks it) and filters
`[?(@.path=="value")]`, `[?(@.path!="value")]` and `[?(@.path)]`. `compile_path` parses once and raises
`JsonPathError`; `JsonPath.find` returns every match, so a missing field is an empty list rather than
an error, and `render_value` prints a match as kubectl does (strings bare, everything else as JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdi.cli.errors import CliError

Step = Callable[[Any], list[Any]]

_RECURSIVE = re.compile(r"\.\.(?=[^.])")
_FIELD = re.compile(r"\.([^.\[\]]+)")
_QUOTED = re.compile(r"\[\s*(?:'([^']*)'|\"([^\"]*)\")\s*\]")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_WILDCARD = re.compile(r"\[\s*\*\s*\]|\.\*")
_FILTER = re.compile(r"\[\?\(\s*@((?:\.[^.\[\]=!)\s]+)+)\s*(?:(==|!=)\s*(?:'([^']*)'|\"([^\"]*)\"|([^)\s]+)))?\s*\)\]")


class JsonPathError(CliError):
    """An expression outside the supported subset, or malformed."""


@dataclass(frozen=True)
class JsonPath:
    """A parsed expression; `find` applies it to a document."""

    text: str
    steps: tuple[Step, ...]

    def find(self, document: Any) -> list[Any]:
        matches = [document]
        for step in self.steps:
            matches = [found for value in matches for found in step(value)]
        return matches

    def first(self, document: Any) -> Any:
        """The first match, or None when nothing matches."""
        found = self.find(document)
        return found[0] if found else None


def compile_path(text: str) -> JsonPath:
    """Parse `{.status.phase}`, `.status.phase` or `$.status.conditions[?(@.type=="Ready")].status`."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    body = body.removeprefix("$")
    if body and not body.startswith((".", "[")):
        body = "." + body
    steps: list[Step] = []
    position = 0
    while position < len(body):
        step, position = _next_step(text, body, position)
        steps.append(step)
    return JsonPath(text, tuple(steps))


def _next_step(text: str, body: str, position: int) -> tuple[Step, int]:
    if found := _RECURSIVE.match(body, position):
        # `..name` is "every container below, then .name"; `..[...]` / `..*` likewise with the bracket.
        after = found.end()
        return _descendants, after if body.startswith("[", after) else after - 1
    if found := _WILDCARD.match(body, position):
        return _every, found.end()
    if found := _FIELD.match(body, position):
        return _key(found.group(1)), found.end()
    if found := _QUOTED.match(body, position):
        return _key(found.group(1) if found.group(1) is not None else found.group(2)), found.end()
    if found := _INDEX.match(body, position):
        return _index(int(found.group(1))), found.end()
    if found := _FILTER.match(body, position):
        path = compile_path(found.group(1))
        operator, expected = found.group(2), next((g for g in found.group(3, 4, 5) if g is not None), None)
        return _filter(path, operator, expected), found.end()
    raise JsonPathError(f"unsupported JSONPath {text!r} at {body[position:]!r}")


def _key(name: str) -> Step:
    return lambda value: [value[name]] if isinstance(value, dict) and name in value else []


def _index(index: int) -> Step:
    def step(value: Any) -> list[Any]:
        if isinstance(value, list) and -len(value) <= index < len(value):
            return [value[index]]
        return []

    return step


def _every(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def _descendants(value: Any) -> list[Any]:
    """`value` and every list or object nested in it, depth first (kubectl's recursive descent: scalars
    are left out, since no step can match inside them)."""
    found: list[Any] = []
    stack = [value]
    while stack:
        current = stack.pop()
        children = list(current.values()) if isinstance(current, dict) else current if isinstance(current, list) else []
        if not children:
            continue
        found.append(current)
        stack.extend(reversed([child for child in children if isinstance(child, dict | list)]))
    return found


def _filter(path: JsonPath, operator: str | None, expected: str | None) -> Step:
    def keep(item: Any) -> bool:
        found = path.find(item)
        if operator is None:
            return bool(found)
        equal = bool(found) and render_value(found[0]) == expected
        return equal if operator == "==" else not equal

    return lambda value: [item for item in _every(value) if keep(item)]


def render_value(value: Any) -> str:
    """A matched value as kubectl prints it: strings as they are, None empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
