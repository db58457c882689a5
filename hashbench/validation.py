"""Settings and their validation: one error type, one way to declare a setting (:class:`Param`)
and one checker (:meth:`Param.check`), whose message ``"<what> must be <constraint>; got
<value>"`` the CLI prints as a single line before exiting non-zero. Method hyperparameters,
run-configuration keys and command options are all Params.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The code lengths hashbench accepts.
MIN_BITS, MAX_BITS = 8, 1024


class HashbenchError(Exception):
    """A user-facing error (bad input, missing data, refused resume): one clear line."""


class NonFiniteLossError(HashbenchError):
    """Training produced a NaN or infinite loss; carries the step for the record."""


@dataclass(frozen=True)
class Param:
    """One setting: its default and its constraints, as data (scikit-learn style). Method
    hyperparameters, run-configuration keys and command options are all declared this way, and
    :meth:`check` is the one place a value is checked.

    ``kind`` is ``float``, ``int``, ``bool`` or ``str``; numbers may be bounded by ``low``
    / ``high`` (``open_low`` excludes ``low``); strings may be limited to ``choices`` or to a
    regular expression ``pattern`` (``what`` says it in words); ``nullable`` admits None
    (meaning "derive it", as the help says).
    """

    default: Any
    kind: type = float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    help: str = ""
    pattern: str | None = None
    what: str = ""

    def describe(self) -> str:
        """The constraint in words, as error messages and docs print it."""
        if self.what:
            text = self.what
        elif self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "a string"
        else:
            text = "an integer" if self.kind is int else "a finite number"
            if self.low is not None:
                text += f" {'>' if self.open_low else '>='} {self.low:g}"
            if self.high is not None:
                text += f"{' and' if self.low is not None else ''} <= {self.high:g}"
        return text + (" or none" if self.nullable else "")

    def means_none(self, value: Any) -> bool:
        """Whether ``value`` is the word for None (``none`` or ``null``, as a file or the command
        line writes it), unless it is one of the choices (``scheduler = "none"``)."""
        return (isinstance(value, str) and value.strip().lower() in ("none", "null")
                and not (self.choices is not None and value in self.choices))

    def from_text(self, raw: Any) -> Any:
        """A command-line value read for this setting: ``none`` / ``null`` for None, ``true`` /
        ``false`` for a flag, a number for a number, the text itself for a string; anything
        else is passed on for :meth:`check` to refuse."""
        if not isinstance(raw, str):
            return raw
        if self.means_none(raw):
            return None
        lowered = raw.strip().lower()
        if self.kind is bool:
            return {"true": True, "false": False}.get(lowered, raw)
        if self.kind in (int, float):
            return _number(raw.strip())
        return raw

    def check(self, name: str, value: Any) -> Any:
        """``value`` coerced to ``kind`` (an int for a float key, an integral float for an int
        key), or a one-line HashbenchError ``"<name> must be <constraint>; got <value>"``.
        Strings are never numbers: ``"64"`` for an integer key is refused."""
        if value is None and self.nullable:
            return None
        bad = HashbenchError(f"{name} must be {self.describe()}; got {value!r}")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
                raise bad
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        if self.kind is int:
            if float(value) != int(value):
                raise bad
            value = int(value)
        else:
            value = float(value)
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return value


class NonFiniteOutputError(NonFiniteLossError):
    """The model produced NaN or infinite values (features, outputs or codes): a run never ends ``done`` on them."""


class DegenerateCodesError(HashbenchError):
    """Every database item got the same code: retrieval by such codes ranks at random."""




def real(default: float | None, low: float | None = None, high: float | None = None, *, open_low: bool = False,
         nullable: bool = False, help: str = "") -> Param:
    """A float setting, optionally bounded."""
    return Param(default, float, low, high, open_low=open_low, nullable=nullable, help=help)


def integer(default: int | None, low: int | None = None, high: int | None = None, *, nullable: bool = False,
            help: str = "") -> Param:
    """An integer setting, optionally bounded."""
    return Param(default, int, low, high, nullable=nullable, help=help)


def choice(default: str | None, choices: tuple[str, ...], *, nullable: bool = False, help: str = "") -> Param:
    """A string setting limited to ``choices``."""
    return Param(default, str, choices=choices, nullable=nullable, help=help)


def text(default: str | None, *, nullable: bool = False, help: str = "") -> Param:
    """A free string setting (a name, a path)."""
    return Param(default, str, nullable=nullable, help=help)


def flag(default: bool, *, help: str = "") -> Param:
    """A true/false setting."""
    return Param(default, bool, help=help)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (a one-line error otherwise)."""
    return Param(None, str, choices=tuple(choices)).check(name, value)


@dataclass(frozen=True)
class Items:
    """A list setting: comma-separated on the command line, a list (or such a string) in a
    file, each item checked by ``item``; at least one item."""

    item: Param
    default: tuple[Any, ...] | None = None
    help: str = ""
    #: Whether "none" (or an empty list) means no items.
    may_be_empty: bool = False

    def parse(self, name: str, value: Any) -> list[Any]:
        """The items of ``value``, each checked (command-line strings are parsed as numbers
        where the item is a number)."""
        if self.may_be_empty and value in ("none", []):
            return []
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            items: list[Any] = [_number(part) if self.item.kind in (int, float) else part for part in parts]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise HashbenchError(f"{name} must be a list or a comma-separated string; got {value!r}")
        if not items:
            raise HashbenchError(f"{name} must name at least one item; got {value!r}")
        return [self.item.check(name, item) for item in items]


def _number(text: str) -> Any:
    """A command-line list item as an int or a float where it reads as one (else the text)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
