"""One registry helper for methods, backbones and datasets.

Modelled on timm's registry: a registration carries its name, a duplicate name is an
error, ``names`` takes fnmatch include/exclude patterns, and an unknown name raises an
error that lists close matches. Third-party packages register through an entry-point
group that is read lazily, on first lookup; the built-in methods in ``methods/`` use the
same group, so there is only one way in.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that no registry entry carries; its message lists the options."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class _Entry(Generic[T]):
    name: str
    loader: Callable[[], T]
    summary: str | None = None
    _obj: T | None = None

    def load(self) -> T:
        if self._obj is None:
            self._obj = self.loader()
        return self._obj


class Registry(Generic[T]):
    """A named collection of objects of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, _Entry[T]] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, obj: T | None = None, *, summary: str | None = None):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def add(target: T) -> T:
            self._add(_Entry(name, lambda: target, summary, target))
            return target

        return add if obj is None else add(obj)

    def _add(self, entry: _Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._entries:
                self._add(_Entry(ep.name, ep.load))

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name].load()

    def unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known)})"

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def names(self, include: str | Iterable[str] = "*", exclude: str | Iterable[str] = ()) -> list[str]:
        """Sorted names matching any ``include`` pattern and no ``exclude`` pattern."""
        self._load_entry_points()
        include = [include] if isinstance(include, str) else list(include)
        exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        return sorted(
            n
            for n in self._entries
            if any(fnmatch.fnmatch(n, p) for p in include) and not any(fnmatch.fnmatch(n, p) for p in exclude)
        )

    def summary(self, name: str) -> str:
        """The one-line description: the registered summary, else the object's ``summary``
        attribute, else the first line of its docstring."""
        obj: Any = self.get(name)
        entry = self._entries[name]
        text = entry.summary or getattr(obj, "summary", None) or (obj.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


METHODS: Registry[Any] = Registry("method", entry_point_group="hashbench.methods")
BACKBONES: Registry[Any] = Registry("backbone", entry_point_group="hashbench.backbones")
DATASETS: Registry[Any] = Registry("dataset", entry_point_group="hashbench.datasets")
