"""Import progress as a percentage that only rises, shared between the transfer thread (which
counts bytes), qemu-img (whose `-p` output can raise it) and the metrics endpoint (which serves it).
Float assignment is atomic in CPython, so no lock is needed for a single writer per phase."""

from __future__ import annotations

from pathlib import Path


class Progress:
    def __init__(self, progress_file: Path | None = None) -> None:
        self._percent = 0.0
        self._file = progress_file

    @property
    def percent(self) -> float:
        return self._percent

    def raise_to(self, percent: float) -> None:
        percent = min(max(percent, 0.0), 100.0)
        if percent > self._percent:
            self._percent = percent

    def bytes_done(self, done: int, total: int | None) -> None:
        if total:
            self.raise_to(done * 100.0 / total)

    def write_file(self) -> None:
        """For local runs without the metrics endpoint (e.g. the CLI demo): the value in a file."""
        if self._file is not None:
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(f"{self._percent:.2f}\n")
            tmp.replace(self._file)
