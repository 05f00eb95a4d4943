"""The scale benchmark judges reconcile times after start-up, as it counts requests, and reports start-up's
reconciles apart: an empty store's first certificate rotation (making RSA keys) is not "at 1,000 objects"."""

from __future__ import annotations

from typing import Any

from bench.scale_metrics import ReconcileStats, _Spent
from bench.scale_report import markdown, startup, table, targets
from cdi.runtime.types import Key


def _stats(*seconds: float, name: str = "dv") -> ReconcileStats:
    stats = ReconcileStats()
    for i, s in enumerate(seconds):
        stats.add(Key("ns", f"{name}-{i}"), s, _Spent(None, api=s / 2))
    return stats


def test_restart_returns_what_came_before_and_measures_afresh() -> None:
    stats = _stats(0.2, 0.01)
    before = stats.restart()
    assert before["reconciles"] == 2 and before["max"] == 0.2 and before["over_100ms"] == 1
    stats.add(Key("ns", "late"), 0.03, _Spent(None))
    after = stats.summary()
    assert after["reconciles"] == 1 and after["max"] == 0.03 and after["over_100ms"] == 0
    assert [s["key"] for s in after["slowest"]] == ["ns/late"]


def _result(during: dict[str, ReconcileStats], at_startup: dict[str, Any] | None) -> dict[str, Any]:
    controller: dict[str, Any] = {
        "final": {"requests": 900, "watches": 11, "calls": {}}, "baseline": {"requests": 0, "watches": 0, "calls": {}},
        "per_kind_after_baseline": {"create Pod": 100}, "peak_rss_bytes": 150 << 20,
        "reconciles": {name: s.summary() for name, s in during.items()}}
    if at_startup is not None:
        controller["reconciles_at_startup"] = at_startup
    return {"backend": "embedded", "count": 100, "create_seconds": 5.0, "all_succeeded_seconds": 6.0,
            "latency_p50": 1.0, "latency_max": 2.0, "controller": controller}


def test_startup_is_reported_but_not_judged() -> None:
    rotation = _stats(0.23, name="config")
    result = _result({"dv": _stats(0.02, 0.05), "certificate-rotation": ReconcileStats()},
                     {"certificate-rotation": rotation.restart(), "dv": ReconcileStats().summary()})
    assert dict(targets(result))["reconcile≤100ms"]
    line = startup(result)
    assert "1 reconciles, the slowest 230 ms (certificate-rotation, ns/config-0; 115 ms outside API calls)" in line
    assert line in table([result])
    assert line in markdown([result], {"date": "now"})


def test_a_slow_reconcile_after_startup_misses_the_target() -> None:
    result = _result({"dv": _stats(0.02, 0.101)}, {})
    assert not dict(targets(result))["reconcile≤100ms"]
    assert startup(result) == ""


def test_results_from_before_the_split_still_render() -> None:
    result = _result({"dv": _stats(0.02)}, None)
    assert startup(result) == ""
    assert "start-up" not in table([result])
