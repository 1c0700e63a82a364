"""Parameter checks with scikit-learn style messages.

Every message reads ``The 'x' parameter of Foo must be ... Got ... instead.``
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def param_error(name: str, owner: str, must: str, got: Any) -> ValueError:
    """Build the standard error for a bad parameter value."""
    return ValueError(f"The '{name}' parameter of {owner} must be {must}. Got {got!r} instead.")


def check_in(name: str, owner: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        opts = ", ".join(repr(a) for a in allowed)
        raise param_error(name, owner, f"one of {{{opts}}}", value)


def check_number(
    name: str,
    owner: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise unless ``value`` is a real (or integer) number inside the given interval."""
    kind = "an int" if integer else "a float"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise param_error(name, owner, _describe(kind, low, high, low_inclusive, high_inclusive), value)
    bad = (
        (low is not None and (value < low if low_inclusive else value <= low))
        or (high is not None and (value > high if high_inclusive else value >= high))
    )
    if bad:
        raise param_error(name, owner, _describe(kind, low, high, low_inclusive, high_inclusive), value)


def _describe(kind: str, low, high, lo_inc: bool, hi_inc: bool) -> str:
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>=' if lo_inc else '>'} {low}"
    if low is None:
        return f"{kind} {'<=' if hi_inc else '<'} {high}"
    left = "[" if lo_inc else "("
    right = "]" if hi_inc else ")"
    return f"{kind} in the range {left}{low}, {high}{right}"
