"""Label selectors as the API server understands them, for the embedded store's `list` and `watch`.

Accepts both forms the `Cluster` protocol allows: a mapping (every pair must match exactly) and the
string syntax of `kubectl -l`: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`,
`a>3`, `a<3`, comma-separated and all required. As in Kubernetes, `!=` and `notin` also match objects
that lack the label. A malformed selector raises `Invalid`. `cdi.embedded.store` calls `parse_selector`
once per request and `Selector.matches` per object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cdi.cluster.errors import Invalid

Operator = Literal["=", "!=", "in", "notin", "exists", "!", ">", "<"]

_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?)"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"\s*({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})\s*")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")
_VALUE_ONLY = re.compile(rf"\s*({_VALUE})\s*")


@dataclass(frozen=True)
class Requirement:
    """One clause of a selector."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case ">" | "<":
                return present and _compare(value, self.operator, self.values[0])


@dataclass(frozen=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.matches(labels or {}) for requirement in self.requirements)


EVERYTHING = Selector()


def parse_selector(selector: Mapping[str, str] | str | None) -> Selector:
    """The selector for either protocol form; raises `Invalid` when the string does not parse."""
    if selector is None:
        return EVERYTHING
    if isinstance(selector, Mapping):
        return Selector(tuple(Requirement(str(k), "=", (str(v),)) for k, v in sorted(selector.items())))
    if not selector.strip():
        return EVERYTHING
    return Selector(tuple(_parse_clause(clause, selector) for clause in _split_clauses(selector)))


def _split_clauses(text: str) -> list[str]:
    """Split on commas outside parentheses: "a in (x,y),b" -> ["a in (x,y)", "b"]."""
    clauses, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            clauses.append(text[start:index])
            start = index + 1
    clauses.append(text[start:])
    return clauses


def _parse_clause(clause: str, whole: str) -> Requirement:
    if found := _SET.fullmatch(clause):
        key, operator, values = found.groups()
        items = tuple(_set_value(item, whole) for item in values.split(","))
        return Requirement(key, "in" if operator == "in" else "notin", tuple(sorted(set(items))))
    if found := _EQUALITY.fullmatch(clause):
        key, operator, value = found.groups()
        if operator in (">", "<") and not _is_int(value):
            raise Invalid(f'unable to parse requirement: for "{operator}" operator, the value must be an integer: '
                          f'"{whole}"')
        op: Operator = "=" if operator == "==" else operator  # type: ignore[assignment]
        return Requirement(key, op, (value,))
    if found := _EXISTS.fullmatch(clause):
        negated, key = found.groups()
        return Requirement(key, "!" if negated else "exists")
    raise Invalid(f'unable to parse requirement: "{clause.strip()}" in label selector "{whole}"')


def _set_value(item: str, whole: str) -> str:
    found = _VALUE_ONLY.fullmatch(item)
    if found is None:
        raise Invalid(f'invalid value "{item.strip()}" in label selector "{whole}"')
    return found.group(1)


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()


def _compare(value: str, operator: str, bound: str) -> bool:
    if not _is_int(value):
        return False
    return int(value) > int(bound) if operator == ">" else int(value) < int(bound)
