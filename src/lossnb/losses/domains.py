"""Hyperparameter domains, as predicates the registry checks before a loss is built."""
from __future__ import annotations

import math
from typing import Any


def is_real(v: Any) -> bool:
    """A finite number that a float can hold (an int of 400 digits cannot)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def nonneg(v: Any) -> bool:
    return is_real(v) and v >= 0


def positive(v: Any) -> bool:
    return is_real(v) and v > 0


def unit_halfopen(v: Any) -> bool:
    """In [0, 1)."""
    return is_real(v) and 0 <= v < 1


def unit_closed(v: Any) -> bool:
    """In [0, 1]."""
    return is_real(v) and 0 <= v <= 1


def at_least(lo: float):
    return lambda v: is_real(v) and v >= lo


def in_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    def check(v):
        if not is_real(v):
            return False
        above = v > lo if lo_open else v >= lo
        below = v < hi if hi_open else v <= hi
        return above and below

    return check


def positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def real_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(is_real(x) for x in v)
