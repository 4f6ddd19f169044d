"""Numbers for people, the same on every view: LRs as 5e-5, tokens as 28,672, durations as 4 min 10 s.

A missing value (None, NaN) is MISSING, never the words "None" or "nan". Imports nothing heavy.
"""
from __future__ import annotations

import math

MISSING = "—"


def _missing(x) -> bool:
    try:
        return x is None or not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def lr(x) -> str:
    """A learning rate: 5e-5, 2.5e-5, 1e-4 (no exponent padding, no SI prefixes); 0.5 stays 0.5."""
    if _missing(x):
        return MISSING
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 0.01:
        return f"{x:g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def tokens(n) -> str:
    """A count with thousands separators: 28,672."""
    return MISSING if _missing(n) else f"{round(float(n)):,}"


def duration(s) -> str:
    """Seconds as 42 s, 4 min 10 s, 1 h 5 min, 2 d 3 h (the two largest units; no zero second part)."""
    if _missing(s) or float(s) < 0:
        return MISSING
    s = round(float(s))
    if s < 60:
        return f"{s} s"
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"


def pct(x, digits: int = 1) -> str:
    """A fraction as a percentage: 0.15 -> 15%, 0.125 -> 12.5% (trailing zeros dropped)."""
    if _missing(x):
        return MISSING
    text = f"{100 * float(x):.{digits}f}".rstrip("0").rstrip(".") if digits else f"{100 * float(x):.0f}"
    return f"{'0' if text in ('-0', '') else text}%"


def points(x, digits: int = 1) -> str:
    """A signed change in percentage points: +3.2 points, -4.0 points."""
    return MISSING if _missing(x) else f"{float(x):+.{digits}f} points"
