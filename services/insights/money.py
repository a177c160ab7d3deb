"""Money, rates and percentiles: exact arithmetic, rounded half-up once, at the end.

Money is exact until the last step: amounts are summed as fractions and rounded
half-up to the cent once. Rates are fractions of one, rounded half-up to four
decimals. Speed-to-lead uses the median and the nearest-rank percentile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

MONEY_SCALE = 10_000
"""Stored money is an integer count of ten-thousandths: exact on SQLite and PostgreSQL."""


def to_units(amount: Decimal | Fraction) -> int:
    """A money amount as stored: ten-thousandths, rounded half-up."""
    return _round_half_up(Fraction(amount) * MONEY_SCALE)


def from_units(units: int) -> Fraction:
    """Stored units back to an exact amount."""
    return Fraction(units, MONEY_SCALE)


def round_to(value: Fraction | Decimal | int, places: int) -> Decimal:
    """`value` rounded half-up (away from zero on a tie) to `places` decimals."""
    scaled = _round_half_up(Fraction(value) * 10**places)
    return Decimal(scaled).scaleb(-places)


def money(value: Fraction | Decimal | int) -> Decimal:
    """Rounded half-up to the cent."""
    return round_to(value, 2)


def rate(numerator: int | Decimal, denominator: int | Decimal | None) -> Decimal | None:
    """numerator / denominator as a fraction with 4 decimals; None when nothing to divide by."""
    if not denominator:
        return None
    return round_to(Fraction(numerator) / Fraction(denominator), 4)


def cost_per(spend: Decimal, count: int) -> Decimal | None:
    """Spend per unit, to the cent; None when the count or the spend is zero (undefined).

    A channel without spend (direct, organic) did not cost 0.00 per lead: its cost is unknown.
    """
    if count <= 0 or spend <= 0:
        return None
    return money(Fraction(spend) / count)


def median(sorted_values: Sequence[int]) -> Fraction | None:
    """The median of sorted values (the mean of the middle two when their number is even)."""
    n = len(sorted_values)
    if n == 0:
        return None
    middle = n // 2
    if n % 2:
        return Fraction(sorted_values[middle])
    return Fraction(sorted_values[middle - 1] + sorted_values[middle], 2)


def percentile(sorted_values: Sequence[int], pct: int) -> Fraction | None:
    """The nearest-rank percentile: the smallest value with at least pct% at or below it."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(pct * n / 100))
    return Fraction(sorted_values[rank - 1])


def _round_half_up(value: Fraction) -> int:
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole
