"""One registry helper for methods, backbones and datasets.

Modelled on timm's registry: a registration carries its name, a duplicate name is an
error, ``names`` takes fnmatch include/exclude patterns, and an unknown name raises an
error that lists close matches. Built-ins register themselves in their own modules (a
decorator, as timm's ``@register_model``), imported on the first lookup; third-party
packages register through an entry-point group, read at the same moment.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
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

    def __init__(self, kind: str, entry_point_group: str | None = None, *, builtins: str | None = None,
                 name_attribute: str | None = None) -> None:
        """``builtins``: a module whose import registers the built-in entries; ``name_attribute``:
        the attribute of a registered class that receives its registry key."""
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtins = builtins
        self.name_attribute = name_attribute
        self._entries: dict[str, _Entry[T]] = {}
        self._entry_points_loaded = entry_point_group is None and builtins is None

    def register(self, name: str, obj: T | None = None, *, summary: str | None = None):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def add(target: T) -> T:
            self._add(_Entry(name, lambda: target, summary, self._named(name, target)))
            return target

        return add if obj is None else add(obj)

    def _named(self, name: str, obj: T) -> T:
        """``obj`` with its registry key in ``name_attribute`` (a class registered twice keeps its first name)."""
        if self.name_attribute is not None and not vars(obj).get(self.name_attribute):
            setattr(obj, self.name_attribute, name)
        return obj

    def _add(self, entry: _Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        if self.builtins is not None:
            importlib.import_module(self.builtins)
        for ep in entry_points(group=self.entry_point_group) if self.entry_point_group else ():
            if ep.name not in self._entries:  # a built-in keeps its name
                self._add(_Entry(ep.name, lambda ep=ep: self._named(ep.name, ep.load())))

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


METHODS: Registry[Any] = Registry("method", entry_point_group="hashbench.methods", builtins="hashbench.methods",
                                  name_attribute="name")
BACKBONES: Registry[Any] = Registry("backbone", entry_point_group="hashbench.backbones")
DATASETS: Registry[Any] = Registry("dataset", entry_point_group="hashbench.datasets")
