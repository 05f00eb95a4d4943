"""A PromQL instant-query evaluator for the subset CDI's rules use, over samples parsed from `/metrics`.

Test support only. `promql_parser` (Prometheus' grammar, in Rust) parses; this module evaluates the
resulting tree at one instant with Prometheus' semantics for what the rules need: selectors with `=`,
`!=`, `=~`, `!~`; numbers and `vector(s)`; `sum` and `count` with or without `by`/`without`; arithmetic and
comparison between scalars and vectors (comparisons filter unless `bool`); one-to-one vector matching with
`on`/`ignoring` (arithmetic keeps the matched labels and drops the name); `or`, `and`, `unless`. Anything
else raises `NotImplementedError`, so a rule that needs more is noticed rather than misjudged. `for`
durations are not evaluated: a test asks whether an alert's expression selects anything now.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import promql_parser as pp
from prometheus_client.parser import text_string_to_metric_families

NAME = "__name__"


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float

    @property
    def name(self) -> str | None:
        return self.labels.get(NAME)


Value = float | list[Sample]

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": lambda a, b: a / b if b else float("nan")}
_COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}


def parse_exposition(text: str) -> list[Sample]:
    """Every sample of a `/metrics` page, its name as the `__name__` label."""
    return [Sample({NAME: sample.name, **sample.labels}, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def evaluate(expr: str, samples: Iterable[Sample]) -> Value:
    return _eval(pp.parse(expr), list(samples))


def record(rules: Iterable[tuple[str, str]], samples: Iterable[Sample]) -> list[Sample]:
    """`samples` plus what each recording rule (name, expr) records, in order, as Prometheus evaluates a group."""
    db = list(samples)
    for name, expr in rules:
        result = evaluate(expr, db)
        assert isinstance(result, list), f"recording rule {name} must be a vector"
        db += [Sample({**_without_name(s.labels), NAME: name}, s.value) for s in result]
    return db


def _eval(node: Any, db: list[Sample]) -> Value:
    kind = type(node).__name__
    if kind == "NumberLiteral":
        return float(node.val)
    if kind == "ParenExpr":
        return _eval(node.expr, db)
    if kind == "UnaryExpr":
        return _binary("*", -1.0, _eval(node.expr, db), None)
    if kind == "VectorSelector":
        return [s for s in db if s.name == node.name and all(_matches(m, s.labels) for m in node.matchers.matchers)]
    if kind == "Call" and node.func.name == "vector":
        value = _eval(node.args[0], db)
        assert isinstance(value, float)
        return [Sample({}, value)]
    if kind == "AggregateExpr":
        return _aggregate(str(node.op), node.modifier, _eval(node.expr, db))
    if kind == "BinaryExpr":
        return _binary(str(node.op), _eval(node.lhs, db), _eval(node.rhs, db), node.modifier)
    raise NotImplementedError(f"{kind}: {node}")


def _matches(matcher: Any, labels: Mapping[str, str]) -> bool:
    found = labels.get(matcher.name, "")
    op = matcher.op
    if op == pp.MatchOp.Equal:
        return found == matcher.value
    if op == pp.MatchOp.NotEqual:
        return found != matcher.value
    matched = re.fullmatch(matcher.value, found) is not None
    return matched if op == pp.MatchOp.Re else not matched


def _without_name(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != NAME}


def _aggregate(op: str, modifier: Any, vector: Value) -> list[Sample]:
    assert isinstance(vector, list), f"{op} needs a vector"
    groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for sample in vector:
        labels = _without_name(sample.labels)
        if modifier is None:  # one group of everything
            labels = {}
        elif modifier.type == pp.AggModifierType.By:
            labels = {k: v for k, v in labels.items() if k in modifier.labels}
        else:
            labels = {k: v for k, v in labels.items() if k not in modifier.labels}
        groups.setdefault(tuple(sorted(labels.items())), []).append(sample.value)
    if op not in ("sum", "count"):
        raise NotImplementedError(op)
    return [Sample(dict(key), sum(values) if op == "sum" else float(len(values))) for key, values in groups.items()]


def _signature(labels: Mapping[str, str], modifier: Any) -> tuple[tuple[str, str], ...]:
    matching = modifier.matching if modifier is not None else None
    plain = _without_name(labels)
    if matching is not None and matching.type == pp.LabelModifierType.Include:  # on(...)
        plain = {k: v for k, v in plain.items() if k in matching.labels}
    elif matching is not None:  # ignoring(...)
        plain = {k: v for k, v in plain.items() if k not in matching.labels}
    return tuple(sorted(plain.items()))


def _binary(op: str, lhs: Value, rhs: Value, modifier: Any) -> Value:
    keep_bool = modifier is not None and modifier.return_bool
    if op in ("or", "and", "unless"):
        assert isinstance(lhs, list) and isinstance(rhs, list), f"{op} needs two vectors"
        right = {_signature(s.labels, modifier) for s in rhs}
        if op == "or":
            left = {_signature(s.labels, modifier) for s in lhs}
            return lhs + [s for s in rhs if _signature(s.labels, modifier) not in left]
        return [s for s in lhs if (_signature(s.labels, modifier) in right) == (op == "and")]
    if isinstance(lhs, float) and isinstance(rhs, float):
        if op in _ARITHMETIC:
            return _ARITHMETIC[op](lhs, rhs)
        assert keep_bool, "a comparison between scalars needs bool"
        return float(_COMPARISON[op](lhs, rhs))
    if isinstance(lhs, float) or isinstance(rhs, float):
        vector = rhs if isinstance(lhs, float) else lhs
        assert isinstance(vector, list)
        pairs = [(s, (lhs, s.value) if isinstance(lhs, float) else (s.value, rhs)) for s in vector]
        return [out for s, (a, b) in pairs if (out := _combine(op, s, a, b, s.labels, keep_bool)) is not None]
    assert isinstance(lhs, list) and isinstance(rhs, list)
    by_signature: dict[tuple[tuple[str, str], ...], Sample] = {}
    for sample in rhs:
        signature = _signature(sample.labels, modifier)
        assert signature not in by_signature, f"many-to-one matching is not supported ({signature})"
        by_signature[signature] = sample
    results = []
    for sample in lhs:
        signature = _signature(sample.labels, modifier)
        other = by_signature.get(signature)
        if other is None:
            continue
        labels = dict(signature) if modifier is not None and modifier.matching is not None and \
            modifier.matching.type == pp.LabelModifierType.Include else sample.labels
        if (out := _combine(op, sample, sample.value, other.value, labels, keep_bool)) is not None:
            results.append(out)
    return results


def _combine(op: str, sample: Sample, a: float, b: float, labels: Mapping[str, str], keep_bool: bool) -> Sample | None:
    if op in _ARITHMETIC:
        return Sample(_without_name(labels), _ARITHMETIC[op](a, b))
    if op not in _COMPARISON:
        raise NotImplementedError(op)
    holds = _COMPARISON[op](a, b)
    if keep_bool:
        return Sample(_without_name(labels), float(holds))
    return Sample(labels, sample.value) if holds else None
