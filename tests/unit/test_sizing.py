"""Upstream's sizing formulas, checked against its worked examples and property tests."""

from decimal import Decimal

import pytest

from cdi.quantity import QuantityError, format_quantity, parse_quantity
from cdi.sizing import parse_overhead, required_space, round_down, round_up, usable_space

MiB = 1 << 20
GiB = 1 << 30


@pytest.mark.parametrize(("text", "value"), [
    ("1Gi", GiB), ("1G", 10**9), ("500Mi", 500 * MiB), ("1.5Gi", 3 * GiB // 2), ("100", 100),
    ("1e3", 1000), ("5243392Ki", 5243392 * 1024), ("0.5", 1), ("100m", 1), (2048, 2048),
])
def test_parse_quantity(text: str | int, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1GB", "abc", "1..5Gi", "-"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_format_quantity() -> None:
    assert [format_quantity(v) for v in (0, 10 * GiB, 1536 * MiB, 1000)] == ["0", "10Gi", "1536Mi", "1000"]


def test_usable_space_of_a_10gi_volume() -> None:
    # RoundDown(ceil(10Gi / 1.06), 1MiB): 10737418240 / 1.06 = 10129639849.06..., i.e. 9660 whole MiB.
    assert usable_space(Decimal("0.06"), 10 * GiB) == 9660 * MiB == 10129244160


@pytest.mark.parametrize("overhead", ["0", "0.06", "0.1", "0.055", "0.5", "1"])
@pytest.mark.parametrize("mib", [1, 2, 500, 1024, 10240, 123457])
def test_required_and_usable_are_inverse(overhead: str, mib: int) -> None:
    o = Decimal(overhead)
    assert usable_space(o, required_space(o, mib * MiB)) == mib * MiB


def test_rounding_edges() -> None:
    assert round_up(0, 512) == 0
    assert round_down(510, 512) == 0
    assert required_space(Decimal("0.06"), 1) == required_space(Decimal("0.06"), MiB)


@pytest.mark.parametrize(("text", "value"), [
    (None, Decimal(0)), ("", Decimal(0)), ("0.06", Decimal("0.06")), ("garbage", Decimal(0)), ("2", Decimal(0)),
])
def test_parse_overhead(text: str | None, value: Decimal) -> None:
    assert parse_overhead(text) == value
