"""Turns the samples into the table the issue asks for, prints it, and writes JSON and Markdown.

Per case: wall seconds, ratio to the limit (curl of the same bytes, or the reference decompressor when
that is slower), ratio to each upstream-style pipeline, peak RSS, scratch bytes, CPU seconds (every
process of the pipeline) and CPU seconds per GiB of the image file moved, the system (kernel) seconds
of that CPU, and whether the issue's targets hold. Used by `bench.__main__`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import Sample

MiB = 1 << 20
GiB = 1 << 30


@dataclass
class Row:
    case: str
    method: str
    sample: Sample
    limit: float | None = None
    scratch_convert: float | None = None
    nbdkit: float | None = None
    target: str = ""
    notes: list[str] = field(default_factory=list)
    data_bytes: int = 0  # the image file's bytes this row moved (all of them, for concurrent imports)

    def cpu_per_gib(self) -> float | None:
        return self.sample.cpu / (self.data_bytes / GiB) if self.data_bytes and self.sample.cpu else None

    def ratio(self, other: float | None) -> float | None:
        return self.sample.wall / other if other else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = ("case", "method", "wall s", "×limit", "×scratch+convert", "×nbdkit", "peak RSS MiB", "scratch MiB",
          "CPU s", "CPU s/GiB", "of it sys s", "ok", "target")


def cells(row: Row) -> tuple[str, ...]:
    ok = "yes" if row.sample.returncode == 0 else f"exit {row.sample.returncode}"
    return (row.case, row.method, _fmt(row.sample.wall), _fmt(row.ratio(row.limit)),
            _fmt(row.ratio(row.scratch_convert)), _fmt(row.ratio(row.nbdkit)),
            _fmt(row.sample.rss / MiB, 0) if row.sample.rss else "-", _fmt(row.sample.scratch / MiB, 1),
            _fmt(row.sample.cpu or None, 1), _fmt(row.cpu_per_gib()),
            _fmt(row.sample.sys or None, 2) if row.sample.cpu else "-", ok, row.target)


def table(rows: list[Row]) -> str:
    data = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in data) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in data)


def markdown(rows: list[Row], context: dict[str, object]) -> str:
    lines = [f"# Data-path benchmark, {context['date']}", "",
             "```", json.dumps(context, indent=2), "```", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    notes = [f"- {r.case} / {r.method}: {n}" for r in rows for n in r.notes]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def write(results: Path, rows: list[Row], context: dict[str, object], *, partial: bool = False) -> Path:
    """`<date>.{json,md}`; a partial run (some cases, some pipelines, or small images) gets `-partial`
    in its name, which git ignores, so only full runs are ever committed by accident."""
    results.mkdir(parents=True, exist_ok=True)
    stem = results / (time.strftime("%Y-%m-%d-%H%M") + ("-partial" if partial else ""))
    doc = {"context": context, "rows": [{**asdict(r), "sample": asdict(r.sample)} for r in rows]}
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    stem.with_suffix(".md").write_text(markdown(rows, context))
    return stem.with_suffix(".md")
