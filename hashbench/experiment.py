"""Experiments as files: the grids behind a published table, in one TOML file in the repository.

``hashbench run --config FILE [--grid NAME]`` runs a file's grids, ``hashbench config show``
prints every run's resolved configuration with the layer each value came from, and
``hashbench report --config FILE`` writes the report its ``[report]`` table describes, naming
the file (path and sha256) on every page. A file's keys are the command line's, in one key
space (``_`` for ``-``)::

    methods = ["dpsh", "csq"]      # the grid: methods, datasets, bits, seeds (lists, or
    datasets = ["cifar10"]         # comma-separated strings as on the command line)
    bits = [16, 32, 64]
    seeds = [0, 1, 2]
    results = "results/cifar10"    # run options: results, launcher, partition, gpus_per_job, ...
    frozen_backbone = true         # any config key (hashbench.config.RunConfig) ...
    image_size = 128
    lambda_center = 2.0            # ... or hyperparameter of a method of the grid

    [method.mlh]                   # config keys and hyperparameters for one method's runs
    lambda_center = 2.0

    [[grid]]                       # a named grid: the top level with its own keys merged over it
    name = "main"                  # ([grid.method.X] over [method.X])
    methods = ["mlh", "csq"]

    [report]                       # the options of `hashbench report`
    out = "reports/cifar10"        # out and the notes files: inside the working directory (else: on the command line)

Within a grid, its keys override the top level's and ``[method.NAME]`` overrides both; the
file as a whole sits above every recipe and below the command line (:mod:`hashbench.config`).
A file without ``[[grid]]`` tables is one grid, its top level. Several ``[[grid]]`` tables may
share a name, and ``--grid NAME`` runs them all, in file order. Run options say where and how
every grid runs: the top level alone sets them. Here the file's structure and key names are
checked; every value is checked where it is used (:func:`hashbench.config.resolve_with_sources`
for config values, the option's Param for the others), and an error names the file, the table
and the key.
"""

from __future__ import annotations

import difflib
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.config import CONFIG_KEYS, GRID_OPTIONS, Layer
from hashbench.registry import METHODS, UnknownNameError
from hashbench.validation import HashbenchError, Items, Param

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _error(file: str, table: str, message: str) -> HashbenchError:
    return HashbenchError(f"{file}: {table + ' ' if table else ''}{message}")


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HashbenchError(f"{name} must be a table; got {value!r}")
    return value


def hyperparameter_names() -> set[str]:
    """Every hyperparameter of every registered method."""
    return {key for name in METHODS.names() for key in METHODS.get(name).params}


@dataclass
class Grid:
    """One grid of an experiment file, the top level merged in: its grid keys as parsed, and
    the config values it gives (config key or hyperparameter -> (value, the table it was
    written in)), for every run and per method."""

    file: str
    name: str | None
    keys: dict[str, list[Any]] = field(default_factory=dict)
    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    methods: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)

    def layer(self, method: str, known: Callable[[str], bool]) -> Layer:
        """The file's values for the runs of ``method``: the keys it knows, then its own table."""
        merged = {k: written for k, written in self.values.items() if known(k)} | self.methods.get(method, {})
        return Layer("file", {k: value for k, (value, _) in merged.items()}, file=self.file,
                     tables={k: table for k, (_, table) in merged.items()})

    def locate(self, key: str, message: str) -> HashbenchError:
        return _error(self.file, self.values[key][1] if key in self.values else "", message)


@dataclass
class _Level:
    """The top level or one ``[[grid]]`` table, as written."""

    keys: dict[str, list[Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    methods: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Schema:
    """The keys of an experiment file's grids: the grid keys (lists) and the run options
    (top level only), from :mod:`hashbench.planning`; config keys and hyperparameters beside them."""

    grid_keys: dict[str, Items]
    options: dict[str, Param]
    check_grid_key: Callable[[str, list[Any]], None]


def _unknown(key: str, schema: Schema, where: str) -> str:
    allowed = [*schema.grid_keys, *schema.options, *CONFIG_KEYS]
    if key in GRID_OPTIONS:
        return f"{key} is a grid key: write {key}s = [...]"
    if key == "force":
        return "force is a command-line flag only (it replaces finished records)"
    close = difflib.get_close_matches(key, [*allowed, *hyperparameter_names()], n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"unknown key {key!r}{where}{hint} (grid keys, run options, config keys and method hyperparameters "
            "are allowed; see `hashbench config show --help`)")


def _parse_level(data: dict[str, Any], file: str, label: str, schema: Schema, *, top: bool) -> _Level:
    level = _Level()
    where = " at the top level" if top else ""
    hyperparameters = hyperparameter_names()
    for key, value in data.items():
        if key in (("grid", "report") if top else ("name",)):
            continue  # read by the caller
        try:
            if key == "set":
                raise HashbenchError("[set] is gone: its keys go at the top level (or in [[grid]] tables), beside "
                                     "the other keys")
            if key == "method":
                level.methods = _parse_methods(value, file, label)
            elif key in schema.grid_keys:
                level.keys[key] = schema.grid_keys[key].parse(key, value)
                schema.check_grid_key(key, level.keys[key])
            elif key in schema.options:
                if not top:
                    raise HashbenchError(f"{key} says where every grid runs: set it at the top level")
                level.options[key] = schema.options[key].check(key, value)
            elif key in CONFIG_KEYS or key in hyperparameters:
                level.values[key] = (value, label)
            else:
                raise HashbenchError(_unknown(key, schema, where))
        except (HashbenchError, UnknownNameError) as err:
            raise _error(file, label, str(err)) from None
    return level


def _parse_methods(value: Any, file: str, label: str) -> dict[str, dict[str, tuple[Any, str]]]:
    """``[method.NAME]`` tables: a registered method, each key a config key or one of its hyperparameters."""
    out = {}
    for method, table in _table(value, "method").items():
        where = f"{label} [method.{method}]".strip()
        try:
            cls = METHODS.get(method)
            values = {}
            for key, item in _table(table, f"method.{method}").items():
                if key in GRID_OPTIONS or key in ("methods", "datasets", "bits", "seeds"):
                    raise HashbenchError(f"{key} is a grid key: it cannot differ per method")
                if key not in CONFIG_KEYS and key not in cls.params:
                    close = difflib.get_close_matches(key, [*CONFIG_KEYS, *cls.params], n=2, cutoff=0.6)
                    hint = f"; did you mean {' or '.join(close)}?" if close else ""
                    raise HashbenchError(f"unknown key {key!r} for {method}{hint} (a config key or one of its "
                                         f"hyperparameters: {', '.join(sorted(cls.params)) or 'none'})")
                values[key] = (item, where)
        except (HashbenchError, UnknownNameError) as err:
            raise _error(file, where, str(err)) from None
        out[method] = values
    return out


def _merge(top: _Level, grid: _Level, file: str, name: str | None) -> Grid:
    """A grid: the top level with the grid's keys merged over it, table by table."""
    methods = {m: {**top.methods.get(m, {}), **grid.methods.get(m, {})} for m in {*top.methods, *grid.methods}}
    return Grid(file=file, name=name, keys={**top.keys, **grid.keys}, values={**top.values, **grid.values},
                methods=methods)


def _repo_relative(path: Path) -> str:
    """``path`` relative to the root of the git work tree holding it (as given if none does)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if (parent / ".git").exists():
            return resolved.relative_to(parent).as_posix()
    return str(path)


@dataclass
class Experiment:
    """A parsed experiment file: its grids (in file order), its run options and its ``[report]`` options."""

    path: Path
    label: str  # relative to the repository root: what report pages name
    sha256: str
    grids: list[Grid]
    named: bool  # whether the file has [[grid]] tables
    options: dict[str, Any]  # the top level's run options (results, launcher, ...)
    report: dict[str, Any]

    def describe(self) -> str:
        """``<path in the repository> (sha256 <12 hex digits>)``: what a report page names."""
        return f"{self.label} (sha256 {self.sha256[:12]})"

    def select(self, wanted: list[str] | None) -> list[Grid]:
        """The grids named ``wanted`` (every table of each name, in file order); all of them for None."""
        if wanted is None:
            return self.grids
        if not self.named:
            raise HashbenchError(f"{self.path}: has no [[grid]] tables to choose from with --grid")
        known = list(dict.fromkeys(g.name for g in self.grids))
        for name in wanted:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise HashbenchError(f"{self.path}: no [[grid]] named {name!r}{hint} (grids: {', '.join(known)})")
        return [grid for grid in self.grids if grid.name in wanted]


def load_experiment(path: Path, schema: Schema, report_options: dict[str, Param | Items]) -> Experiment:
    """Parse an experiment file (see the module docstring); any error is one line naming the
    file, the table and the key."""
    file = str(path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise HashbenchError(f"{file}: not valid TOML: {err}") from None
    top = _parse_level(data, file, "", schema, top=True)
    tables = data.get("grid", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _error(file, "", "grid must be [[grid]] tables")
    grids = []
    for index, table in enumerate(tables, start=1):
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _error(file, f"[[grid]] number {index}", f"name must be a non-empty string; got {name!r}")
        grids.append(_merge(top, _parse_level(table, file, f"[grid {name}]", schema, top=False), file, name))
    if not tables:
        grids.append(_merge(top, _Level(), file, None))
    return Experiment(path=path, label=_repo_relative(path), sha256=hashlib.sha256(raw).hexdigest(), grids=grids,
                      named=bool(tables), options=top.options,
                      report=_parse_report(data.get("report", {}), file, report_options))


#: ``[report]`` paths the report writes into (out) or copies onto its pages (notes, appendix_notes):
#: a file from elsewhere must not reach outside the working directory; the command line may.
CONFINED_REPORT_PATHS = ("out", "notes", "appendix_notes")


def _inside_working_directory(key: str, value: str) -> None:
    """A relative path that stays inside the working directory (what it is resolved against),
    symbolic links followed; else a one-line error that says to give it on the command line."""
    here = Path.cwd().resolve()
    if Path(value).is_absolute() or not (here / value).resolve().is_relative_to(here):
        raise HashbenchError(f"{key} {value!r} leads outside the working directory {here}; give it on the command "
                             f"line as --{key.replace('_', '-')} instead")


def _parse_report(value: Any, file: str, options: dict[str, Param | Items]) -> dict[str, Any]:
    """``[report]``: the options of ``hashbench report``, checked as the command line's are."""
    out: dict[str, Any] = {}
    try:
        table = _table(value, "report")
    except HashbenchError as err:
        raise _error(file, "", str(err)) from None
    for key, item in table.items():
        try:
            spec = options.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise HashbenchError(f"unknown key {key!r}{hint} (keys: {', '.join(sorted(options))})")
            out[key] = spec.parse(key, item) if isinstance(spec, Items) else spec.check(key, item)
            if key in CONFINED_REPORT_PATHS and out[key] is not None:
                _inside_working_directory(key, out[key])
        except HashbenchError as err:
            raise _error(file, "[report]", str(err)) from None
    return out
