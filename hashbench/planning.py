"""Which runs a command asks for: the grid (methods x datasets x bits x seeds), each run's
resolved configuration, and the run options, from the command line and an experiment file.

The keys of ``hashbench run`` are declared here once (grid keys and run options) or in
:class:`hashbench.config.RunConfig` (config keys): the command-line options and an experiment
file's keys are both derived from these declarations. Everything is resolved and validated
before anything loads or trains.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.config import (
    BITS,
    CONFIG_KEYS,
    SEED,
    RunConfig,
    flat_config,
    resolve_with_sources,
    unknown_key_message,
)
from hashbench.data.datasets import display_name, get_dataset
from hashbench.engine.launch import LAUNCHERS
from hashbench.experiment import Experiment, Grid, Schema, load_experiment
from hashbench.registry import METHODS
from hashbench.validation import HashbenchError, Items, Param, choice, integer, text

#: The grid's keys: lists, on the command line comma-separated.
GRID_KEYS: dict[str, Items] = {
    "methods": Items(text(None), help="method names (hashbench list methods); required without --config"),
    "datasets": Items(text(None), default=("digits",), help="dataset names (hashbench list datasets); "
                      "NAME=listfile:DIR (or imagefolder:DIR) shows a folder dataset as NAME in results folders, "
                      "tables and figures"),
    "bits": Items(BITS, default=(16, 32, 64), help="code lengths"),
    "seeds": Items(SEED, default=(0,), help="training seeds"),
}
#: Options that say where and how the runs go (an experiment file's top level alone sets them).
RUN_OPTIONS: dict[str, Param] = {
    "results": text("results", help="the results folder"),
    "launcher": choice("local", LAUNCHERS, help="local: in this process; slurm: one submitit job per run; "
                                                "submitit-local: submitit's local executor (real subprocess jobs)"),
    "partition": text(None, nullable=True, help="Slurm partition"),
    "gpus_per_job": integer(1, 0),
    "cpus_per_job": integer(8, 1),
    "time_limit": integer(240, 1, help="minutes per job"),
    "array_parallelism": integer(64, 1, help="jobs of the array at once"),
}


def check_grid_key(key: str, items: list[Any]) -> None:
    """Method and dataset names must exist (an unknown one fails naming its key)."""
    for name in items if key in ("methods", "datasets") else ():
        try:
            METHODS.get(name) if key == "methods" else get_dataset(name)
        except Exception as err:
            raise HashbenchError(f"{key}: {err}") from None


SCHEMA = Schema(grid_keys=GRID_KEYS, options=RUN_OPTIONS, check_grid_key=check_grid_key)


def read_experiment(path: Path) -> Experiment:
    """An experiment file, parsed against this schema and the report's options."""
    from hashbench.analysis.report import REPORT_OPTIONS

    return load_experiment(path, SCHEMA, REPORT_OPTIONS)


@dataclass
class CommandLine:
    """What the command line gave: grid keys, config values (options and ``--set``) and run options."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid, resolved and validated, with the layer that set each value."""

    config: RunConfig
    sources: dict[str, str]
    grid: str | None = None


def grid_key(key: str, command_line: CommandLine, grid: Grid | None) -> list[Any]:
    """A grid key: the command line's, else the file grid's, else its default."""
    if key in command_line.grid:
        return command_line.grid[key]
    if grid is not None and key in grid.keys:
        return grid.keys[key]
    default = GRID_KEYS[key].default
    if default is None:
        raise HashbenchError(f"give --{key} (or --config FILE with {key} = [...])")
    return list(default)


def run_option(key: str, command_line: CommandLine, experiment: Experiment | None) -> Any:
    """A run option: the command line's, else the file's top level's, else its default."""
    if key in command_line.options:
        return RUN_OPTIONS[key].check(f"--{key.replace('_', '-')}", command_line.options[key])
    if experiment is not None and key in experiment.options:
        return experiment.options[key]
    return RUN_OPTIONS[key].default


def plan_runs(command_line: CommandLine, experiment: Experiment | None = None,
              grid_names: list[str] | None = None) -> list[PlannedRun]:
    """Every run the command asks for: per grid (of the file, or the command line alone) the
    product datasets x methods x bits x seeds, each resolved and validated (the command line's
    values over the file's)."""
    if grid_names is not None and experiment is None:
        raise HashbenchError("--grid chooses among the [[grid]] tables of an experiment file: give --config FILE")
    runs = []
    for grid in experiment.select(grid_names) if experiment else [None]:
        keys = {key: grid_key(key, command_line, grid) for key in GRID_KEYS}
        check_grid_key("methods", keys["methods"])
        shown: dict[str, str] = {}
        for dataset in keys["datasets"]:  # one name, one results folder and one table column
            first = shown.setdefault(display_name(dataset), dataset)
            if first != dataset:
                raise HashbenchError(f"datasets {first} and {dataset} are both shown as {display_name(dataset)}; "
                                     "give them different names")
        classes = {name: METHODS.get(name) for name in keys["methods"]}

        def known(key: str, among: list[Any]) -> bool:
            return key in CONFIG_KEYS or any(key in cls.params for cls in among)

        first = keys["methods"][0]
        for key in command_line.values:  # a key no method of the grid knows is a typo, not a per-method setting
            if not known(key, list(classes.values())):
                raise HashbenchError(unknown_key_message(key, first, list(classes[first].params)))
        for key in grid.values if grid else ():
            if not known(key, list(classes.values())):
                raise grid.locate(key, unknown_key_message(key, first, list(classes[first].params)))
        for dataset, method, bits, seed in itertools.product(keys["datasets"], keys["methods"], keys["bits"],
                                                             keys["seeds"]):
            cls = classes[method]
            config, sources = resolve_with_sources(
                method=method, method_cls=cls, dataset=dataset, dataset_defaults=get_dataset(dataset)[0].defaults,
                bits=bits, seed=seed, overrides={k: v for k, v in command_line.values.items() if known(k, [cls])},
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
            *[f"{key:<{width}} = {shown:<{value_width}}  # {run.sources.get(key, 'grid key')}"
              for key, shown in texts.items()]]))
    return "\n\n".join(blocks)
