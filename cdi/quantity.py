"""Kubernetes resource quantities ("1Gi", "500M", "1.5Gi", "100m") as exact integers.

Used by the API models (size validation), the sizing rules and the importer (IMPORTER_IMAGE_SIZE).
Parsing is exact (Decimal), so "1.5Gi" is 1610612736 bytes; fractional bytes round up as Kubernetes'
`Value()` does.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
}
_PATTERN = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity_decimal(text: str | int) -> Decimal:
    """The exact value of a quantity string (or an int, taken as is)."""
    if isinstance(text, int):
        return Decimal(text)
    match = _PATTERN.match(text.strip())
    if not match:
        raise QuantityError(f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {text!r}")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            return value * (Decimal(10) ** int(exponent[1:]))
    except InvalidOperation as e:  # pragma: no cover - the regex admits only valid decimals
        raise QuantityError(f"invalid quantity {text!r}") from e
    suffix = suffix or ""
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix]


def parse_quantity(text: str | int) -> int:
    """The quantity as whole units, rounded up (Kubernetes `Quantity.Value()`)."""
    value = parse_quantity_decimal(text)
    whole = int(value)
    return whole + 1 if value > whole else whole


def format_quantity(value: int) -> str:
    """The shortest exact binary-suffixed form of a byte count ("10Gi", "1536Mi", "1000")."""
    if value == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)
