"""Experiments as files: the grids behind a published table, in one TOML file in the repository.

``hashbench run --config FILE [--grid NAME]`` runs a file's grids, ``hashbench config show``
prints every run's resolved configuration with the layer each value came from, without
running anything, and ``hashbench report --config FILE`` writes the report its ``[report]``
table describes, naming the file (path and sha256) on every page. Options given on the
command line override the file. The schema::

    # the options of `hashbench run`, with '_' for '-'; lists or comma-separated strings
    methods = ["dpsh", "csq"]
    datasets = ["cifar10"]
    bits = [16, 32, 64]
    seeds = [0, 1, 2]
    results = "results/cifar10"   # paths relative to the working directory, as on the command line
    data_root = "../shared/data"
    frozen_backbone = true        # also backbone, weights, epochs, batch_size, lr, device, progress, and
                                  # launcher, partition, gpus_per_job, cpus_per_job, time_limit, array_parallelism

    [set]                         # what --set sets: config keys and method hyperparameters ("none": None)
    image_size = 128

    [method.mlh]                  # for the runs of one method only
    lambda_center = 2.0

    [[grid]]                      # a named grid: the top level with its own keys merged over it,
    name = "main"                 # table by table ([grid.set] over [set], [grid.method.X] over [method.X])
    methods = ["mlh", "csq"]

    [report]                      # the options of `hashbench report` (results: the top level's by default)
    out = "reports/cifar10"
    baseline = "itq"

Within a grid, options < ``[set]`` < ``[method.NAME]``; the file as a whole sits above every
recipe and below the command line (:mod:`hashbench.config`). A file without ``[[grid]]``
tables is one grid, its top level. Several ``[[grid]]`` tables may share a name and
``--grid NAME`` runs them all, in file order (e.g. one method at seed 0 alone beside the
others at three seeds). ``results`` and the launcher's options say where and how every
grid runs: the top level alone sets them. Every key and value is checked as the command
line's are, and an error names the file, the table and the key.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.config import (
    CONFIG_KEYS,
    DEVICES,
    GRID_OPTIONS,
    Layer,
    RunConfig,
    coerce_value,
    flat_config,
    parse_value,
    resolve_with_sources,
    unknown_key_message,
)
from hashbench.data.datasets import display_name, get_dataset
from hashbench.engine.launch import LAUNCHERS
from hashbench.registry import METHODS, UnknownNameError
from hashbench.validation import HashbenchError, check_bits, check_choice, check_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The grid's own keys: lists of names or numbers.
GRID_KEYS = ("methods", "datasets", "bits", "seeds")
#: Options of ``hashbench run`` that set a config key (``weights``: a local state dict, as ``--weights``).
CONFIG_OPTIONS = {"backbone": str, "weights": str, "frozen_backbone": bool, "epochs": int, "batch_size": int,
                  "lr": float, "device": str, "data_root": str, "progress": bool}
#: Options of ``hashbench run`` that say where and how the runs go: the top level alone sets them.
COMMAND_OPTIONS = {"results": str, "launcher": str, "partition": str, "gpus_per_job": int, "cpus_per_job": int,
                   "time_limit": int, "array_parallelism": int}
#: The ``[report]`` table: the options of ``hashbench report``.
REPORT_OPTIONS = {"results": str, "out": str, "datasets": list, "bits": list, "tsne_bits": int, "tsne_methods": list,
                  "notes": str, "ties": str, "baseline": str, "figures": bool}
#: Each option type: what it must be, and the test a TOML value passes (an int is a float; a bool is no int).
_KINDS = {bool: ("true or false", lambda v: isinstance(v, bool)),
          int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
          float: ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
          str: ("a string", lambda v: isinstance(v, str))}
#: Tables at the top level beside the options.
_TABLES = ("set", "method", "grid", "report")


def _error(file: str, table: str, message: str) -> HashbenchError:
    return HashbenchError(f"{file}: {table + ' ' if table else ''}{message}")


def _typed(key: str, value: Any, kind: type) -> Any:
    """``value`` if it has the TOML type of ``kind`` (an int for a float), else a one-line error."""
    what, test = _KINDS[kind]
    if not test(value):
        raise HashbenchError(f"{key} must be {what}; got {value!r}")
    return float(value) if kind is float else value


def _items(key: str, value: Any) -> list[Any]:
    """A TOML list, or a comma-separated string as on the command line; at least one item."""
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise HashbenchError(f"{key} must be a list or a comma-separated string; got {value!r}")
    if not items:
        raise HashbenchError(f"{key} must name at least one item; got {value!r}")
    return items


def _numbers(key: str, value: Any) -> list[Any]:
    """:func:`_items` of numbers: a comma-separated string's parts are parsed as the command
    line parses them; a TOML list's items are taken as written (a string there is no number)."""
    items = _items(key, value)
    return [parse_value(item) for item in items] if isinstance(value, str) else items


def _names(key: str, value: Any) -> list[str]:
    items = _items(key, value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise HashbenchError(f"{key} must be names; got {item!r}")
    return [item.strip() for item in items]


def _scalar(key: str, value: Any) -> Any:
    """A ``[set]`` or ``[method.X]`` value: a string, number or boolean, the string ``none`` for None."""
    if isinstance(value, str) and value.strip().lower() in ("none", "null"):
        return None
    if not isinstance(value, (str, int, float, bool)):
        raise HashbenchError(f"{key} must be a string, number or boolean (\"none\" for none); got {value!r}")
    return value


def _grid_key(key: str, value: Any) -> Any:
    """One of :data:`GRID_KEYS`, parsed and checked (method and dataset names exist)."""
    if key == "bits":
        return [check_bits(b) for b in _numbers(key, value)]
    if key == "seeds":
        return [check_int("seed", s, 0) for s in _numbers(key, value)]
    parsed = _names(key, value)
    for name in parsed:  # an unknown name fails here, naming the file and the key
        try:
            if key == "methods":
                METHODS.get(name)
            else:
                get_dataset(name)
        except (HashbenchError, UnknownNameError) as err:
            raise HashbenchError(f"{key}: {err}") from None
    return parsed


def _unknown(key: str, allowed: Iterable[str], where: str) -> str:
    """Why ``key`` is not allowed here: a config key belongs in [set], a run option at the top level
    (``where``: words after the key, e.g. " at the top level", as a table's name already says where)."""
    if key in CONFIG_KEYS:
        return f"{key} is a config key, not an option of hashbench run: put it in [set]"
    if key in COMMAND_OPTIONS:
        return f"{key} says where every grid runs: set it at the top level"
    if key == "force":
        return "force is a command-line flag only (it replaces finished records)"
    close = difflib.get_close_matches(key, list(allowed), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown key {key!r}{where}{hint} (keys: {', '.join(sorted(allowed))})"


@dataclass
class Grid:
    """One grid of an experiment file, the top level merged in: its grid keys and run options
    as written, and the config values it gives (config key or hyperparameter -> (value, the
    table it was written in)), for every run and per method."""

    file: str
    name: str | None
    options: dict[str, Any] = field(default_factory=dict)
    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    methods: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)

    def layer(self, method: str, known: Callable[[str], bool]) -> Layer:
        """The file's values for the runs of ``method``: the keys it knows, then its own table."""
        merged = {k: written for k, written in self.values.items() if known(k)} | self.methods.get(method, {})
        return Layer("file", {k: value for k, (value, _) in merged.items()}, file=self.file,
                     tables={k: table for k, (_, table) in merged.items()})

    def locate(self, key: str, message: str) -> HashbenchError:
        table = self.values[key][1] if key in self.values else ""
        return _error(self.file, table, message)


@dataclass
class _Level:
    """The top level or one ``[[grid]]`` table, as written: options, config values from the
    options, ``[set]`` and ``[method.NAME]``, each value with the table it was written in."""

    options: dict[str, Any] = field(default_factory=dict)
    from_options: dict[str, tuple[Any, str]] = field(default_factory=dict)
    set: dict[str, tuple[Any, str]] = field(default_factory=dict)
    methods: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)


def _parse_level(data: dict[str, Any], file: str, label: str, *, top: bool) -> _Level:
    level = _Level()
    allowed = [*GRID_KEYS, *CONFIG_OPTIONS, *((*COMMAND_OPTIONS, *_TABLES) if top else ("set", "method", "name"))]
    where = " at the top level" if top else ""
    for key, value in data.items():
        if key in (("grid", "report") if top else ("name",)):
            continue  # read by the caller
        if key == "set":
            level.set = _parse_set(value, file, f"{label} [set]".strip())
            continue
        if key == "method":
            level.methods = _parse_methods(value, file, label)
            continue
        try:
            if key in GRID_KEYS:
                level.options[key] = _grid_key(key, value)
            elif key in CONFIG_OPTIONS:
                value = _typed(key, value, CONFIG_OPTIONS[key])
                if key == "device":
                    check_choice("device", value, DEVICES)
                if key == "weights":  # as --weights: a local state dict instead of pretrained weights
                    level.from_options.update(weights_path=(value, label), weights=(None, label))
                else:
                    level.from_options[key] = (value, label)
            elif key in COMMAND_OPTIONS and top:
                level.options[key] = _typed(key, value, COMMAND_OPTIONS[key])
                if key == "launcher":
                    check_choice("launcher", value, LAUNCHERS)
            else:
                raise HashbenchError(_unknown(key, allowed, where))
        except (HashbenchError, UnknownNameError) as err:
            raise _error(file, label, str(err)) from None
    return level


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HashbenchError(f"{name} must be a table; got {value!r}")
    return value


def _parse_set(value: Any, file: str, label: str) -> dict[str, tuple[Any, str]]:
    """``[set]``: scalars under config keys or hyperparameters (which method knows a
    hyperparameter is checked with the grid's methods); config keys get their type here."""
    out = {}
    try:
        table = _table(value, "set")
    except HashbenchError as err:
        raise _error(file, label.removesuffix("[set]").strip(), str(err)) from None
    for key, item in table.items():
        if key in GRID_OPTIONS or key in GRID_KEYS:
            raise _error(file, label, f"{key} is a grid key: write it beside [set], not in it")
        try:
            item = _scalar(key, item)
            if key in CONFIG_KEYS:
                item = coerce_value(key, item)
        except HashbenchError as err:
            raise _error(file, label, str(err)) from None
        out[key] = (item, label)
    return out


def _parse_methods(value: Any, file: str, label: str) -> dict[str, dict[str, tuple[Any, str]]]:
    """``[method.NAME]`` tables: a registered method, its hyperparameters and config keys, each checked."""
    out = {}
    try:
        tables = _table(value, "method")
    except HashbenchError as err:
        raise _error(file, label, str(err)) from None
    for method, table in tables.items():
        where = f"{label} [method.{method}]".strip()
        try:
            cls = METHODS.get(method)
            values = {}
            for key, item in _table(table, f"method.{method}").items():
                if key in GRID_OPTIONS or key in GRID_KEYS:
                    raise HashbenchError(f"{key} is a grid key: it cannot differ per method")
                item = _scalar(key, item)
                if key in cls.params:
                    item = cls.params[key].check(key, item)
                elif key in CONFIG_KEYS:
                    item = coerce_value(key, item)
                else:
                    raise HashbenchError(unknown_key_message(key, method, list(cls.params)))
                values[key] = (item, where)
        except (HashbenchError, UnknownNameError) as err:
            raise _error(file, where, str(err)) from None
        out[method] = values
    return out


def _merge(top: _Level, grid: _Level, file: str, name: str | None) -> Grid:
    """A grid: the top level with the grid's keys merged over it, table by table."""
    methods = {m: {**top.methods.get(m, {}), **grid.methods.get(m, {})} for m in {*top.methods, *grid.methods}}
    return Grid(file=file, name=name, options={**top.options, **grid.options},
                values={**top.from_options, **grid.from_options, **top.set, **grid.set}, methods=methods)


def _repo_relative(path: Path) -> str:
    """``path`` relative to the root of the git work tree holding it (as given if none does)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if (parent / ".git").exists():
            return resolved.relative_to(parent).as_posix()
    return str(path)


@dataclass
class Experiment:
    """A parsed experiment file: its grids (in file order) and its ``[report]`` options."""

    path: Path
    label: str  # relative to the repository root: what report pages name
    sha256: str
    grids: list[Grid]
    named: bool  # whether the file has [[grid]] tables
    options: dict[str, Any]  # the top level's grid keys and run options (results, launcher, ...)
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


def load_experiment(path: Path) -> Experiment:
    """Parse and check an experiment file (see the module docstring); any error is one line
    naming the file, the table and the key."""
    file = str(path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise HashbenchError(f"{file}: not valid TOML: {err}") from None
    top = _parse_level(data, file, "", top=True)
    tables = data.get("grid", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _error(file, "", "grid must be [[grid]] tables")
    grids = []
    for index, table in enumerate(tables, start=1):
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _error(file, f"[[grid]] number {index}", f"name must be a non-empty string; got {name!r}")
        grids.append(_merge(top, _parse_level(table, file, f"[grid {name}]", top=False), file, name))
    if not tables:
        grids.append(_merge(top, _Level(), file, None))
    return Experiment(path=path, label=_repo_relative(path), sha256=hashlib.sha256(raw).hexdigest(), grids=grids,
                      named=bool(tables), options=top.options, report=_parse_report(data.get("report", {}), file))


def _parse_report(value: Any, file: str) -> dict[str, Any]:
    """``[report]``: the options of ``hashbench report``, typed as they are there."""
    out: dict[str, Any] = {}
    try:
        table = _table(value, "report")
    except HashbenchError as err:
        raise _error(file, "", str(err)) from None
    for key, item in table.items():
        try:
            kind = REPORT_OPTIONS.get(key)
            if kind is None:
                raise HashbenchError(_unknown(key, REPORT_OPTIONS, ""))
            if key == "bits":
                out[key] = [check_bits(b) for b in _numbers(key, item)]
            elif key == "tsne_methods":  # [] or "none": no t-SNE plot
                out[key] = [] if item in ([], "none") else _names(key, item)
            elif kind is list:
                out[key] = _names(key, item)
            else:
                out[key] = _typed(key, item, kind)
                if key == "ties":
                    check_choice("ties", item, ("expected", "index"))
                if key == "tsne_bits":
                    check_bits(item)
        except HashbenchError as err:
            raise _error(file, "[report]", str(err)) from None
    return out


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid, resolved and validated, with the layer that set each value."""

    config: RunConfig
    sources: dict[str, str]
    grid: str | None = None


def plan_runs(*, methods: list[str], datasets: list[str], bits: list[int], seeds: list[int],
              overrides: dict[str, Any], grid: Grid | None = None) -> list[PlannedRun]:
    """Every run of datasets x methods x bits x seeds, resolved and validated before anything
    loads or trains: what ``hashbench run`` trains and ``hashbench config show`` prints.
    ``overrides`` are the command line's values, ``grid`` the file's (below them)."""
    classes = {name: METHODS.get(name) for name in methods}
    shown: dict[str, str] = {}
    for dataset in datasets:  # one name, one results folder and one table column
        first = shown.setdefault(display_name(dataset), dataset)
        if first != dataset:
            raise HashbenchError(f"datasets {first} and {dataset} are both shown as {display_name(dataset)}; give them "
                                 "different names")

    def known(key: str, among: Iterable[Any]) -> bool:
        return key in CONFIG_KEYS or any(key in cls.params for cls in among)

    for key in overrides:  # a key no method of the grid knows is a typo, not a per-method setting
        if not known(key, classes.values()):
            raise HashbenchError(unknown_key_message(key, methods[0], list(classes[methods[0]].params)))
    for key in grid.values if grid else ():
        if not known(key, classes.values()):
            raise grid.locate(key, unknown_key_message(key, methods[0], list(classes[methods[0]].params)))
    runs = []
    for dataset, method, n_bits, seed in itertools.product(datasets, methods, bits, seeds):
        cls = classes[method]
        config, sources = resolve_with_sources(
            method=method, method_cls=cls, dataset=dataset, dataset_defaults=get_dataset(dataset)[0].defaults,
            bits=n_bits, seed=seed, overrides={k: v for k, v in overrides.items() if known(k, [cls])},
            file=grid.layer(method, lambda k, cls=cls: known(k, [cls])) if grid else None)
        runs.append(PlannedRun(config, sources, grid.name if grid else None))
    return runs


def distinct_runs(runs: list[PlannedRun], results_root: Path) -> list[PlannedRun]:
    """``runs`` with repeats of a run (same folder, same config) dropped; two grids that would
    write one folder with different configs are an error before anything runs."""
    seen: dict[Path, PlannedRun] = {}
    for run in runs:
        folder = run.config.folder(results_root)
        first = seen.setdefault(folder, run)
        if first is not run and first.config.fingerprint() != run.config.fingerprint():
            raise HashbenchError(f"grids {first.grid or '(command line)'} and {run.grid or '(command line)'} both "
                                 f"write {folder} with different configs; give one of them a tag (tag = ...)")
    return list(seen.values())


def _value_text(value: Any) -> str:
    """A value as ``--set`` and TOML spell it (``none`` for None)."""
    return "none" if value is None else json.dumps(value)


def format_runs(runs: list[PlannedRun], results_root: Path, experiment: Experiment | None, *,
                as_json: bool = False) -> str:
    """What ``hashbench config show`` prints: per run its folder, fingerprint and every value
    with the layer that set it (JSON: one object per run, for scripts)."""
    if as_json:
        return json.dumps([{"grid": run.grid, "folder": str(run.config.folder(results_root)),
                            "fingerprint": run.config.fingerprint(), "config": run.config.as_dict(),
                            "sources": run.sources} for run in runs], indent=2, sort_keys=True)
    blocks = [f"# {experiment.describe()}"] if experiment else []
    for i, run in enumerate(runs, start=1):
        config = run.config
        grid = f"grid {run.grid}: " if run.grid else ""
        texts = {key: _value_text(value) for key, value in flat_config(config.as_dict()).items()}
        width, value_width = max(map(len, texts)), max(map(len, texts.values()))
        blocks.append("\n".join([
            f"# [{i}/{len(runs)}] {grid}{config.method} on {config.dataset}, {config.bits} bits, seed {config.seed} "
            f"-> {config.folder(results_root)} (fingerprint {config.fingerprint()})",
            *[f"{key:<{width}} = {text:<{value_width}}  # {run.sources.get(key, 'grid key')}"
              for key, text in texts.items()]]))
    return "\n\n".join(blocks)
