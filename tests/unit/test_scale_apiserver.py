"""The scale benchmark's reading of kube-apiserver's request-duration histogram: which writes, how many
between two pages, and quantiles as Prometheus' histogram_quantile estimates them."""

from __future__ import annotations

import math

import pytest

from bench.scale_apiserver import parse, quantile, rows


def page(counts: dict[tuple[str, str, str], list[tuple[str, int]]]) -> str:
    lines = ["# HELP apiserver_request_duration_seconds ...", "# TYPE apiserver_request_duration_seconds histogram"]
    for (verb, resource, sub), buckets in counts.items():
        for le, n in buckets:
            lines.append(f'apiserver_request_duration_seconds_bucket{{component="apiserver",dry_run="",group="",'
                         f'resource="{resource}",scope="resource",subresource="{sub}",verb="{verb}",version="v1",'
                         f'le="{le}"}} {n}')
    lines.append('apiserver_request_duration_seconds_sum{verb="POST"} 12.5')
    return "\n".join(lines)


BEFORE = page({("POST", "pods", ""): [("0.05", 10), ("0.1", 10), ("0.2", 10), ("+Inf", 10)],
               ("GET", "pods", ""): [("0.05", 500), ("0.1", 500), ("0.2", 500), ("+Inf", 500)]})
AFTER = page({("POST", "pods", ""): [("0.05", 60), ("0.1", 110), ("0.2", 200), ("+Inf", 210)],
              ("PATCH", "persistentvolumeclaims", "status"): [("0.05", 100), ("0.1", 150), ("0.2", 150),
                                                               ("+Inf", 150)],
              ("PATCH", "events", ""): [("0.05", 5), ("0.1", 5), ("0.2", 5), ("+Inf", 5)],
              ("GET", "pods", ""): [("0.05", 900), ("0.1", 900), ("0.2", 900), ("+Inf", 900)]})


def test_only_writes_are_read_and_subresources_are_kept_apart() -> None:
    parsed = parse(AFTER)
    assert set(parsed) == {("POST", "pods"), ("PATCH", "persistentvolumeclaims/status"), ("PATCH", "events")}
    assert parsed[("POST", "pods")] == {0.05: 60, 0.1: 110, 0.2: 200, math.inf: 210}


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile() -> None:
    buckets = {0.05: 50.0, 0.1: 100.0, 0.2: 190.0, math.inf: 200.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)  # the 100th of 200 is the last in (0.05, 0.1]
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.75, buckets) == pytest.approx(0.1 + 0.1 * (50 / 90))
    assert quantile(0.99, buckets) == 0.2  # in the +Inf bucket: the highest finite bound
    assert math.isnan(quantile(0.5, {0.1: 0.0, math.inf: 0.0}))


def test_rows_count_what_happened_between_the_pages_busiest_first() -> None:
    found = rows(BEFORE, AFTER)
    assert [(r.verb, r.resource, r.requests) for r in found] == [("POST", "pods", 200),
                                                                 ("PATCH", "persistentvolumeclaims/status", 150)]
    pods = found[0]  # 50 under 50 ms, 50 more under 100 ms, 90 under 200 ms, 10 over
    assert pods.p50 == pytest.approx(0.1)
    assert pods.over_100ms == pytest.approx(100 / 200)
    assert found[1].over_100ms == 0.0
