"""Input validation at the edge: one error type and one message format for user mistakes.

Every check produces a message of the form ``"<what> must be <constraint>; got <value>"``
so that the CLI can print it as a single line and exit non-zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

MIN_BITS, MAX_BITS = 8, 1024


class HashbenchError(Exception):
    """A user-facing error (bad input, missing data, refused resume): one clear line."""


class NonFiniteLossError(HashbenchError):
    """Training produced a NaN or infinite loss; carries the step for the record."""


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` (an int, or a float with an integral value) as an int within [low, high],
    or raise a one-line HashbenchError; text is no number here (parse it first)."""
    bounds = f" in [{low}, {high}]" if low is not None and high is not None else (
        f" >= {low}" if low is not None else ""
    )
    number = isinstance(value, (int, float)) and not isinstance(value, bool)  # "64" is text, not a number
    ok = number and math.isfinite(value) and float(value).is_integer()
    as_int = int(value) if ok else 0
    if not ok:
        raise HashbenchError(f"{name} must be an integer{bounds}; got {value!r}")
    if (low is not None and as_int < low) or (high is not None and as_int > high):
        raise HashbenchError(f"{name} must be an integer{bounds}; got {as_int}")
    return as_int


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    as_float = float(value) if number else math.nan
    if not math.isfinite(as_float) or as_float < 0 or (as_float == 0 and not allow_zero):
        kind = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise HashbenchError(f"{name} must be {kind}; got {value!r}")
    return as_float


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        raise HashbenchError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_bits(value: Any) -> int:
    return check_int("bits", value, MIN_BITS, MAX_BITS)
