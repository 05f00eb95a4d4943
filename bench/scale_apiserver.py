"""How long kube-apiserver itself took to answer writes during a scale run, from its own
`apiserver_request_duration_seconds` histogram (read with `kubectl get --raw /metrics` before the first
DataVolume and after the last): so that a slow reconcile can be told apart as the server's time or the
controllers' (their client, their event loop). The histogram counts every client's requests (the
controllers', the simulated node's, the user's, kube-controller-manager's), by verb and resource.

Quantiles are estimated as Prometheus' `histogram_quantile` does: linearly inside the bucket that holds
them, so they are only as fine as the server's buckets (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, … seconds:
a p99 of "94 ms" says "between 50 and 100 ms"). The share over 100 ms is exact: 0.1 s is a bucket bound.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

METRIC = "apiserver_request_duration_seconds_bucket"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
_LINE = re.compile(r"^" + METRIC + r"\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Buckets = dict[float, float]  # upper bound (le) -> cumulative count
Histograms = dict[tuple[str, str], Buckets]  # (verb, resource[/subresource]) -> buckets


def parse(text: str) -> Histograms:
    """The write verbs' buckets in a /metrics page, summed over the labels other than verb and resource."""
    found: Histograms = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") not in WRITES:
            continue
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        buckets = found.setdefault((labels["verb"], resource), {})
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + float(match["value"])
    return found


def quantile(q: float, buckets: Buckets) -> float:
    """`histogram_quantile(q, …)`: the bucket holding the q-th request, interpolated linearly inside it (the
    highest finite bound when it is in the +Inf bucket)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Row:
    verb: str
    resource: str
    requests: int
    p50: float
    p99: float
    over_100ms: float  # share of the requests over 0.1 s


def rows(before: str, after: str, *, at_least: int = 100) -> list[Row]:
    """Per verb and resource with at least `at_least` writes between the two pages, busiest first."""
    start, end = parse(before), parse(after)
    found: list[Row] = []
    for key, buckets in end.items():
        earlier = start.get(key, {})
        delta = {le: count - earlier.get(le, 0.0) for le, count in buckets.items()}
        total = delta.get(math.inf, 0.0)
        if total < at_least:
            continue
        within = delta.get(0.1, total)
        found.append(Row(key[0], key[1], int(total), quantile(0.5, delta), quantile(0.99, delta),
                         (total - within) / total))
    return sorted(found, key=lambda row: -row.requests)
