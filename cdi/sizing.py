"""Upstream CDI's sizing formulas, exactly, in integers.

The controller inflates a `storage` request by the filesystem overhead (`required_space`); the importer
sizes the disk to what fits once the filesystem takes its share (`usable_space`). Both align to 1 MiB.
Upstream computes these in float64; we use exact integer arithmetic, which agrees with upstream for
every size below 2**53 bytes and stays exact above it.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from cdi.quantity import parse_quantity_decimal

ALIGN = 1024 * 1024
DEFAULT_FILESYSTEM_OVERHEAD = Decimal("0.06")


def round_down(n: int, multiple: int) -> int:
    return n // multiple * multiple


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def parse_overhead(text: str | None) -> Decimal:
    """FILESYSTEM_OVERHEAD as upstream's importer reads it: a fraction in [0, 1]; unparsable means 0."""
    if not text:
        return Decimal(0)
    try:
        value = parse_quantity_decimal(text.strip())
    except ValueError:
        return Decimal(0)
    return value if Decimal(0) <= value <= Decimal(1) else Decimal(0)


def usable_space(overhead: Decimal, available: int) -> int:
    """The largest 1 MiB-aligned disk that fits in `available` bytes after filesystem overhead."""
    return round_down(_ceil(Decimal(available) / (1 + overhead)), ALIGN)


def required_space(overhead: Decimal, requested: int) -> int:
    """The volume size to ask for so that a `requested`-byte disk fits after filesystem overhead."""
    return _ceil(Decimal(round_up(requested, ALIGN)) * (1 + overhead))
