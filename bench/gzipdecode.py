"""gzip decompression alone, for `python -m bench.resume --decode`: does inflating through the system
zlib by ctypes (`importer.gzipblocks`, which can stop at a DEFLATE block boundary for a checkpoint)
cost anything against Python's zlib module (`zlib.decompressobj`, the member-boundary reader
`importer.formats` falls back to)? And when asked for a boundary every interval of input, as the
checkpoint hook asks, how soon after does it find one?

Each round runs the three readers one after another on the same bytes in memory (1 MiB reads, as the
writer's); each column keeps its fastest round. The load average is printed with the table: the
machine is shared, so only the ratios within a round mean anything.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from importer.formats import _MemberReader  # the fallback, which is what imports used before
from importer.gzipblocks import GzipBlocks
from importer.reader import Reader

MiB = 1 << 20


class _Counting:
    def __init__(self, blob: bytes) -> None:
        self._inner = io.BytesIO(blob)
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self.count += len(data)
        return data


def _run(make: Callable[[Reader], GzipBlocks | _MemberReader], blob: bytes,
         interval: int | None) -> tuple[float, list[int]]:
    """Seconds to decompress `blob`, and the input offsets of the restart points found."""
    source = _Counting(blob)
    reader = make(source)
    points: list[int] = []
    last = 0
    started = time.perf_counter()
    while reader.read(MiB):
        if interval is not None and source.count - last >= interval:
            carry = reader.boundary()
            if carry is not None:
                last = source.count - len(carry)
                points.append(last)
    return time.perf_counter() - started, points


def report(images: list[Path], interval: int, repeat: int) -> str:
    lines = ["", f"## gzip decompression alone (fastest of {repeat} rounds; load average before: "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})", "",
             "| image | MiB in | zlib.decompressobj s | ctypes inflate s (ratio) | with a boundary asked every "
             f"{interval // MiB} MiB s (ratio) | records | input between records, mean / max MiB |",
             "|---|---|---|---|---|---|---|"]
    for path in images:
        blob = path.read_bytes()
        best: dict[str, float] = {}
        points: list[int] = []
        for _ in range(repeat):
            for name, make, every in (("zlib", _MemberReader, None), ("ctypes", GzipBlocks, None),
                                      ("boundaries", GzipBlocks, interval)):
                seconds, found = _run(make, blob, every)
                best[name] = min(best.get(name, seconds), seconds)
                points = found if every is not None else points
        gaps = [b - a for a, b in zip([0, *points], points, strict=False)] or [0]
        lines.append(f"| {path.name} | {len(blob) / MiB:.0f} | {best['zlib']:.3f} | {best['ctypes']:.3f} "
                     f"({best['ctypes'] / best['zlib']:.3f}×) | {best['boundaries']:.3f} "
                     f"({best['boundaries'] / best['zlib']:.3f}×) | {len(points)} | "
                     f"{statistics.mean(gaps) / MiB:.1f} / {max(gaps) / MiB:.1f} |")
    lines.append(f"\nLoad average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(lines) + "\n"
