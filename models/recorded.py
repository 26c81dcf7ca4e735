"""Recorded values: a measurement rounded to the precision it is charted at, and its band.

Early-warning charts band values at the precision they are recorded in (whole numbers;
temperature to 0.1 °C), so a fractional input is first rounded half away from zero to
that precision (:func:`recorded_value`, decimal arithmetic on the float's shortest
decimal form), then compared with the band bounds. NEWS2 (:mod:`models.news2`) scores
every parameter this way; qSOFA (:mod:`models.qsofa`) rounds before its thresholds.

A band table is data: ``(inclusive upper bound, points)`` rows, ascending, the last one
open (``None``). :func:`points_table` precomputes a table's points for every value
already at the recorded precision, keyed by the float (a dict lookup instead of rounding
on the scoring path).
"""

from __future__ import annotations

import math
import numbers
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Final

__all__ = ["TENTH", "WHOLE", "Band", "band_table", "points_table", "recorded_value"]

Band = tuple[Decimal | None, int]
"""One row of a band table: (inclusive upper bound of the recorded value or None, points)."""

WHOLE: Final = Decimal(1)
TENTH: Final = Decimal("0.1")


def band_table(*rows: tuple[str | None, int]) -> tuple[Band, ...]:
    """A band table from ``(upper bound as a decimal string or None, points)`` rows."""
    return tuple((None if upper is None else Decimal(upper), points) for upper, points in rows)


# Enough precision for any finite float (|x| < 2e308) quantized to 0.1.
_DECIMAL_CONTEXT: Final = Context(prec=400, rounding=ROUND_HALF_UP)


def recorded_value(value: float | Decimal, quantum: Decimal = WHOLE) -> Decimal:
    """``value`` rounded half away from zero to ``quantum`` (the recorded precision).

    Floats are converted through their shortest decimal form (``repr``), so ``36.05``
    rounds to ``36.1`` although the binary float is slightly below 36.05.
    Raises ``TypeError`` for non-numbers (and ``bool``), ``ValueError`` for NaN/inf.
    """
    if isinstance(value, bool):
        raise TypeError("expected a number, got bool")
    if isinstance(value, Decimal):
        exact = value
    elif isinstance(value, numbers.Integral):
        exact = Decimal(int(value))
    elif isinstance(value, numbers.Real):
        as_float = float(value)
        if not math.isfinite(as_float):
            raise ValueError(f"expected a finite number, got {value!r}")
        exact = Decimal(repr(as_float))
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not exact.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    try:
        return exact.quantize(quantum, context=_DECIMAL_CONTEXT)
    except InvalidOperation:
        raise ValueError(f"number out of range: {value!r}") from None


# Points of every value at the recorded precision in a generous range, per band table:
# a dict keyed by the float (whole numbers; tenths for temperature, where ``k / 10`` is the
# float nearest to the recorded decimal, exactly what JSON "36.8" parses to). A value in
# the table is already at its recorded precision, so its points are exact; anything else
# (36.85, 110.5, out of range) is rounded with :func:`recorded_value` by the caller.
# Ranges covered: whole numbers 0-500, tenths 0.0-60.0 (temperature).
_WHOLE_RANGE: Final = range(0, 501)
_TENTHS_RANGE: Final = range(0, 601)


def points_table(table: tuple[Band, ...], quantum: Decimal) -> dict[float, int]:
    """Points of every value at the recorded precision in the covered range, by float
    (``quantum`` is :data:`WHOLE` or :data:`TENTH`)."""
    tenths = quantum == TENTH
    scale = 10 if tenths else 1
    # the upper bounds in whole units of the recorded precision (exact: 35.0 -> 350)
    bounds = [(None if u is None else int(u * scale), p) for u, p in table]
    return {
        (k / 10 if tenths else float(k)): next(p for b, p in bounds if b is None or k <= b)
        for k in (_TENTHS_RANGE if tenths else _WHOLE_RANGE)
    }
