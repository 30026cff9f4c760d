"""Rounding as published tables were produced: Python 2's `round`, half away from zero."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext


def round_half_away(x: float, ndigits: int = 2) -> float:
    """Python 2.7 `round(x, ndigits)`: the exact binary value of `x` rounded to `ndigits`
    decimals, ties away from zero, returned as the nearest float.

    Python 3's `round` sends ties to the even neighbour instead (0.125 -> 0.12, not 0.13). A
    value such as 2.675 is stored as 2.67499999..., so both give 2.67: only exact binary ties
    differ.
    """
    return _round(x, ndigits, ROUND_HALF_UP)


def round_half_even(x: float, ndigits: int = 2) -> float:
    """Python 3's `round(x, ndigits)`, spelled out for symmetry."""
    return _round(x, ndigits, ROUND_HALF_EVEN)


def _round(x: float, ndigits: int, mode: str) -> float:
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return x
    with localcontext() as ctx:
        ctx.prec = 400  # enough digits for any finite double at any sensible ndigits
        quantum = Decimal(1).scaleb(-ndigits)
        return float(Decimal(x).quantize(quantum, rounding=mode))
