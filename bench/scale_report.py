"""The scale benchmark's table: per backend, N, time to all Succeeded, API requests per DataVolume,
controller peak RSS and reconcile times (both after start-up), each target judged; and where the
requests went (per verb and kind, per DataVolume) and which controllers were slowest. Prints it and writes
`bench/results/<date>-scale.{json,md}` (`-scale-burst` when the user's creates were not paced,
`-partial` for a run smaller than the issue's; git ignores the JSON unless it is added on purpose).
Used by `bench.scale`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20
TARGET_REQUESTS, TARGET_RSS, TARGET_RECONCILE = 10.0, 300 * MiB, 0.100

HEADER = ("backend", "N", "created s", "all Succeeded s", "DV p50 / max s", "requests/DV", "of which Events", "watches",
          "peak RSS MiB", "slowest reconcile ms", "p99 ms", "targets")


def requests_per_dv(result: dict[str, Any]) -> float:
    report = result["controller"]
    return float(report["final"]["requests"] - report["baseline"]["requests"]) / float(result["count"])


def events_per_dv(result: dict[str, Any]) -> float:
    return sum(n for what, n in breakdown(result) if what.endswith(" Event"))


def slowest(result: dict[str, Any]) -> tuple[float, float, str]:
    """The slowest reconcile of any controller, the worst per-controller p99, and who had the slowest."""
    stats = result["controller"]["reconciles"]
    worst = max(stats, key=lambda name: float(stats[name]["max"]))
    return float(stats[worst]["max"]), max(float(s["p99"]) for s in stats.values()), str(worst)


def targets(result: dict[str, Any]) -> list[tuple[str, bool]]:
    worst, _, _ = slowest(result)
    return [("≤10 req/DV", requests_per_dv(result) <= TARGET_REQUESTS),
            ("RSS≤300MiB", result["controller"]["peak_rss_bytes"] <= TARGET_RSS),
            ("reconcile≤100ms", worst <= TARGET_RECONCILE)]


def cells(result: dict[str, Any]) -> tuple[str, ...]:
    report = result["controller"]
    worst, p99, _ = slowest(result)
    judged = ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in targets(result))
    return (result["backend"], str(result["count"]), f"{result['create_seconds']:.1f}",
            f"{result['all_succeeded_seconds']:.1f}", f"{result['latency_p50']:.1f} / {result['latency_max']:.1f}",
            f"{requests_per_dv(result):.2f}", f"{events_per_dv(result):.2f}", str(report["final"]["watches"]),
            f"{report['peak_rss_bytes'] / MiB:.0f}", f"{worst * 1000:.0f}", f"{p99 * 1000:.0f}", judged)


def breakdown(result: dict[str, Any]) -> list[tuple[str, float]]:
    """Calls per DataVolume by verb and kind, after the baseline, most first (watches left out)."""
    per_kind = result["controller"]["per_kind_after_baseline"]
    rows = [(what, n / result["count"]) for what, n in per_kind.items() if not what.startswith("watch ")]
    return sorted(rows, key=lambda row: -row[1])


def controller_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, s in sorted(result["controller"]["reconciles"].items()):
        if not s["reconciles"]:
            continue
        top: dict[str, Any] = s["slowest"][0] if s["slowest"] else {"key": "-", "throttled": 0.0}
        api = f", {top['api'] * 1000:.0f} ms in API calls" if "api" in top else ""
        outside = f"{s['max_outside_api'] * 1000:.0f}" if "max_outside_api" in s else "-"
        rows.append((name, str(s["reconciles"]), str(s["failures"]), f"{s['p50'] * 1000:.1f}",
                     f"{s['p99'] * 1000:.0f}", f"{s['max'] * 1000:.0f}", f"{s['max_unthrottled'] * 1000:.0f}",
                     outside, str(s["over_100ms"]),
                     f"{top['key']} ({top['throttled'] * 1000:.0f} ms throttled{api})"))
    return rows


def stalls(result: dict[str, Any]) -> str:
    """The controller process's event-loop stalls and garbage collections (runs before they were measured: "")."""
    report = result["controller"]
    if "gc" not in report:
        return ""
    collections = ", ".join(f"gen{g} {v['count']:.0f}× total {v['total_s']:.2f} s max {v['max_ms']:.0f} ms"
                            for g, v in sorted(report["gc"].items()))
    return (f"event loop: longest stall {report['loop_lag_max_ms']:.0f} ms, {report['loop_lag_over_50ms']} over 50 ms;"
            f" garbage collections: {collections}; controller CPU {report.get('cpu_seconds', 0):.1f} s")


def startup(result: dict[str, Any]) -> str:
    """The reconciles before the baseline (an empty store's certificates and token keys being made, caches
    syncing): reported, not judged, as start-up's requests are not counted ("" for older results)."""
    ran = {name: s for name, s in (result["controller"].get("reconciles_at_startup") or {}).items()
           if s["reconciles"]}
    if not ran:
        return ""
    name = max(ran, key=lambda n: float(ran[n]["max"]))
    worst = ran[name]
    key = worst["slowest"][0]["key"] if worst["slowest"] else "-"
    return (f"start-up, before the first DataVolume (not judged): {sum(s['reconciles'] for s in ran.values())} "
            f"reconciles, the slowest {worst['max'] * 1000:.0f} ms ({name}, {key}; "
            f"{worst['max_outside_api'] * 1000:.0f} ms outside API calls)")


SERVER_HEADER = ("verb", "resource", "requests", "p50 ms", "p99 ms", "over 100 ms")
SERVER_TITLE = "kube-apiserver's own time for writes, every client's (its apiserver_request_duration_seconds):"


def server_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The API server's write latencies during the run (`bench.scale_apiserver`); none on the embedded store."""
    return [(r["verb"], r["resource"], str(r["requests"]), f"{r['p50'] * 1000:.0f}", f"{r['p99'] * 1000:.0f}",
             f"{r['over_100ms']:.0%}") for r in result.get("apiserver_writes") or []]


CONTROLLER_HEADER = ("controller", "reconciles", "failed", "p50 ms", "p99 ms", "max ms", "max unthrottled ms",
                     "max outside API calls ms", "> 100 ms", "slowest key")


def _aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def table(results: list[dict[str, Any]]) -> str:
    parts = [_aligned([HEADER, *(cells(r) for r in results)])]
    for result in results:
        parts.append(f"\n{result['backend']}: requests per DataVolume by verb and kind")
        parts.append(_aligned([("call", "per DV"), *((what, f"{n:.2f}") for what, n in breakdown(result))]))
        parts.append(_aligned([CONTROLLER_HEADER, *controller_rows(result)]))
        parts.append(stalls(result))
        if line := startup(result):
            parts.append(line)
        if server_rows(result):
            parts += [SERVER_TITLE, _aligned([SERVER_HEADER, *server_rows(result)])]
    return "\n".join(parts)


def _md(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(results: list[dict[str, Any]], context: dict[str, Any]) -> str:
    lines = [f"# Scale benchmark, {context['date']}", "",
             "The node is simulated (kwok-style): the benchmark creates each PV and binds it, binds each importer",
             "pod to a fake node and moves it Running → Succeeded (`importer_pod_runs_seconds` apart); no volume",
             "is provisioned, no importer runs.", "",
             "```", json.dumps(context, indent=2), "```", "", *_md(HEADER, [cells(r) for r in results])]
    for result in results:
        lines += ["", f"## {result['backend']}", "", "API requests per DataVolume by verb and kind (after start-up;"
                  " on the embedded store a call is a transaction):", "",
                  *_md(("call", "per DV"), [(what, f"{n:.2f}") for what, n in breakdown(result)]), "",
                  *_md(CONTROLLER_HEADER, controller_rows(result)), "", stalls(result)]
        if line := startup(result):
            lines += ["", line]
        if server_rows(result):
            lines += ["", SERVER_TITLE, "", *_md(SERVER_HEADER, server_rows(result))]
    return "\n".join(lines) + "\n"


def rewrite(json_path: Path) -> Path:
    """Render the Markdown of a results JSON again (after the table's layout changed)."""
    doc = json.loads(json_path.read_text())
    path = json_path.with_suffix(".md")
    path.write_text(markdown(doc["results"], doc["context"]))
    return path


def write(results_dir: Path, results: list[dict[str, Any]], context: dict[str, Any], *, partial: bool,
          burst: bool = False) -> Path:
    """The results as `<date>-scale[-burst][-partial].{md,json}` (burst: the user's creates unthrottled)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    name = "-scale" + ("-burst" if burst else "") + ("-partial" if partial else "")
    stem = results_dir / (time.strftime("%Y-%m-%d-%H%M") + name)
    stem.with_suffix(".json").write_text(json.dumps({"context": context, "results": results}, indent=2))
    stem.with_suffix(".md").write_text(markdown(results, context))
    return stem.with_suffix(".md")
