"""Import progress shared between the transfer thread (which counts bytes), qemu-img (whose `-p` output
can raise the percentage) and the metrics endpoint (which serves it): a percentage that only rises, as
upstream's, and — ours — the bytes moved so far and the total when the source said how many.
Plain attribute assignment is atomic in CPython, so no lock is needed for a single writer per phase."""

from __future__ import annotations

from pathlib import Path


class Progress:
    def __init__(self, progress_file: Path | None = None) -> None:
        self._percent = 0.0
        self._file = progress_file
        self._done = 0
        self._total: int | None = None

    @property
    def percent(self) -> float:
        return self._percent

    @property
    def done(self) -> int:
        """Bytes read from the source (import) or received from the client (upload) so far."""
        return self._done

    @property
    def total(self) -> int | None:
        """What `done` will reach, when the source or the client declared it; None when unknown."""
        return self._total

    def raise_to(self, percent: float) -> None:
        percent = min(max(percent, 0.0), 100.0)
        if percent > self._percent:
            self._percent = percent

    def count(self, done: int, total: int | None) -> None:
        """Record the bytes moved so far (not the percentage: the caller knows which share of the bar
        the transfer owns)."""
        self._done = done
        if total:
            self._total = total

    def bytes_done(self, done: int, total: int | None) -> None:
        self.count(done, total)
        if total:
            self.raise_to(done * 100.0 / total)

    def write_file(self) -> None:
        """For local runs without the metrics endpoint (e.g. the CLI demo): the value in a file."""
        if self._file is not None:
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(f"{self._percent:.2f}\n")
            tmp.replace(self._file)
