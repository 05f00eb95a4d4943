"""Column alignment as Go's text/tabwriter does it, for `cdi describe`'s kubectl-shaped output.

kubectl writes describe output as lines whose cells end in tabs and lets tabwriter align them: a
column is aligned over each run of consecutive lines that have a cell in it, runs nest inside the
previous column's runs, and the last cell of a line is never padded. `align` reproduces that (minimum
width 0, padding 2, as kubectl's describe writer), so labels continue under their values and the
Conditions and Events tables line up, without our renderer computing widths itself.
"""

from __future__ import annotations

from collections.abc import Sequence


def align(lines: Sequence[str], *, padding: int = 2, min_width: int = 0) -> list[str]:
    """The lines with every tab replaced by the padding its column block needs."""
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[] for _ in cells]  # per line: the width of each of its padded cells
    _format(cells, widths, 0, 0, len(cells), padding, min_width)
    # Unlike Go's tabwriter, drop the padding an empty last cell leaves at the end of a line.
    return [("".join(cell.ljust(width) for cell, width in zip(row[:-1], row_widths, strict=True)) + row[-1]).rstrip()
            for row, row_widths in zip(cells, widths, strict=True)]


def _format(cells: list[list[str]], widths: list[list[int]], column: int, first: int, last: int,
            padding: int, min_width: int) -> None:
    """Size `column` over each block of consecutive lines in [first, last) that have a cell there."""
    line = first
    while line < last:
        if column >= len(cells[line]) - 1:
            line += 1
            continue
        start = line
        width = min_width
        while line < last and column < len(cells[line]) - 1:
            width = max(width, len(cells[line][column]) + padding)
            line += 1
        for index in range(start, line):
            widths[index].append(width)
        _format(cells, widths, column + 1, start, line, padding, min_width)
