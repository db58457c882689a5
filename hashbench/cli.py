"""The command line: ``hashbench list``, ``hashbench run``, ``hashbench config show``, ``hashbench report``.

Thin by design: parse, validate, call the library. A user mistake is one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hashbench.config import CONFIG_OPTIONS, CONFIG_PARAMS, RunConfig, parse_assignments
from hashbench.data.datasets import PATTERNS, display_name
from hashbench.data.standard import LIST_PRESETS
from hashbench.deploy.export import FORMATS
from hashbench.deploy.index import BACKENDS as SEARCH_BACKENDS
from hashbench.engine.distributed import world
from hashbench.engine.launch import ClusterOptions, submit
from hashbench.engine.preflight import data_key, preflight
from hashbench.engine.runner import execute, map_label
from hashbench.experiment import Experiment
from hashbench.method import family_key
from hashbench.models.backbones import RANDOM_INIT
from hashbench.planning import (
    GRID_KEYS,
    RUN_OPTIONS,
    CommandLine,
    PlannedRun,
    distinct_runs,
    format_runs,
    plan_runs,
    read_experiment,
    run_option,
)
from hashbench.registry import BACKBONES, DATASETS, METHODS, UnknownNameError
from hashbench.validation import HashbenchError, Items, Param


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors about user input into click's one-line errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (HashbenchError, UnknownNameError) as err:
            raise click.ClickException(str(err)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hashbench")
def main() -> None:
    """hashbench: train and compare deep supervised hashing methods under one protocol."""


@main.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "backbones", "all"]), default="all")
def list_command(what: str) -> None:
    """List registered methods, datasets or backbones with one-line descriptions."""
    sections = {
        "methods": method_lines(),
        "datasets": [(name, f"{DATASETS.get(name).summary}\n{dataset_setup(DATASETS.get(name).defaults)}")
                     for name in DATASETS.names()]
        + [(spec.name, f"{spec.summary}\n{dataset_setup(spec.defaults)}") for spec in PATTERNS.values()],
        "backbones": [(name, BACKBONES.get(name).summary) for name in BACKBONES.names()],
    }
    for section, rows in sections.items():
        if what not in (section, "all"):
            continue
        if what == "all":
            click.echo(f"{section}:")
        width = max(len(name) for name, _ in rows)
        for name, summary in rows:
            first, *more = summary.splitlines()
            click.echo(f"  {name:<{width}}  {first}")
            for line in more:
                click.echo(f"  {'':<{width}}    {line}")


def method_lines() -> list[tuple[str, str]]:
    """Each method's summary and what it is (family; label-free; closed form), grouped by family."""
    classes = {name: METHODS.get(name) for name in METHODS.names()}
    rows = []
    for name, cls in sorted(classes.items(), key=lambda item: (family_key(item[1].family), item[0])):
        kind = [cls.family, *(["label-free"] if not cls.supervised else []),
                *(["closed form"] if cls.closed_form else [])]
        rows.append((name, f"{cls.summary or METHODS.summary(name)} [{', '.join(kind)}]"))
    return rows


def dataset_setup(defaults: dict[str, Any]) -> str:
    """What a dataset is read with unless told otherwise: backbone, weights, image size."""
    backbone = defaults.get("backbone", RunConfig.backbone)
    weights = defaults.get("weights", RunConfig.weights) or RANDOM_INIT
    size = defaults.get("image_size") or "the weights' own"
    return f"default model: backbone {backbone} ({weights}), image size {size}; each method its reference recipe"


def _help(spec: Param | Items, extra: str = "", *, default: bool = True) -> str:
    """An option's help: the setting's help as a sentence, ``extra``, and its default."""
    shown = spec.default
    if isinstance(spec, Items):
        shown = ",".join(map(str, shown)) if shown else None
    sentence = spec.help[:1].upper() + spec.help[1:] + "." if spec.help else ""
    return " ".join(filter(None, [sentence, extra, f"[default: {shown}]" if default and shown is not None else ""]))


#: Metavars of the config options whose values are paths.
PATH_KEYS = {"weights_path": "PATH", "data_root": "DIR"}


def _metavar(key: str, param: Param) -> str:
    if param.choices is not None:
        return "[" + "|".join(param.choices) + "]"
    return PATH_KEYS.get(key) or {int: "INT", float: "FLOAT"}.get(param.kind, "TEXT")


def _run_selection_options() -> list[Callable[..., Any]]:
    """The options of ``run`` and ``config show``, derived from the key declarations
    (:data:`hashbench.planning.GRID_KEYS`, :data:`hashbench.config.CONFIG_OPTIONS`): which runs,
    configured how. Every option defaults to None, so that only what the user gave overrides
    an experiment file."""
    options = [
        click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
                     help="An experiment file (TOML: the same keys as these options, [method.NAME] and [[grid]] "
                          "tables; docs/guide.md); options given here override it."),
        click.option("--grid", "grid_names", default=None, metavar="NAMES",
                     help="Only these [[grid]] tables of --config (comma-separated; default: all, in file order)."),
    ]
    options += [click.option(f"--{key}", key, default=None, metavar="LIST", help=_help(spec, "Comma-separated."))
                for key, spec in GRID_KEYS.items()]
    recipe = "Default: the method's recipe or the dataset's model (hashbench config show)."
    for key, flag_names in CONFIG_OPTIONS.items():
        param = CONFIG_PARAMS[key]
        metavar = {} if "/" in flag_names else {"metavar": _metavar(key, param)}
        options.append(click.option(flag_names, key, default=None, help=_help(param, recipe, default=False),
                                    **metavar))
    options += [
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                     help="Any config key or method hyperparameter; repeatable."),
        click.option("--results", "results", default=None, help=_help(RUN_OPTIONS["results"])),
    ]
    return options


def run_selection(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options of :func:`_run_selection_options` to a command."""
    for option in reversed(_run_selection_options()):
        func = option(func)
    return func


def command_line(values: dict[str, Any], assignments: tuple[str, ...]) -> CommandLine:
    """What the user gave on the command line (options left at None were not given)."""
    given = {key: value for key, value in values.items() if value is not None}
    return CommandLine(
        grid={key: GRID_KEYS[key].parse(f"--{key}", given[key]) for key in GRID_KEYS if key in given},
        values={**{key: given[key] for key in CONFIG_OPTIONS if key in given}, **parse_assignments(assignments)},
        options={key: given[key] for key in RUN_OPTIONS if key in given})


def select_runs(config_file: str | None, grid_names: str | None, line: CommandLine
                ) -> tuple[list[PlannedRun], Experiment | None]:
    """Every run the options ask for, resolved and validated before anything loads or trains."""
    experiment = read_experiment(Path(config_file)) if config_file else None
    wanted = None if grid_names is None else Items(Param(None, str)).parse("--grid", grid_names)
    return plan_runs(line, experiment, wanted), experiment


@main.command("run")
@run_selection
@click.option("--force", is_flag=True, help="Rerun runs that already have a record (the old one is archived).")
@click.option("--launcher", default=None, help=_help(RUN_OPTIONS["launcher"]))
@click.option("--partition", default=None, help=_help(RUN_OPTIONS["partition"]))
@click.option("--gpus-per-job", "gpus_per_job", default=None, type=int, help=_help(RUN_OPTIONS["gpus_per_job"]))
@click.option("--cpus-per-job", "cpus_per_job", default=None, type=int, help=_help(RUN_OPTIONS["cpus_per_job"]))
@click.option("--time-limit", "time_limit", default=None, type=int, help=_help(RUN_OPTIONS["time_limit"]))
@click.option("--array-parallelism", "array_parallelism", default=None, type=int,
              help=_help(RUN_OPTIONS["array_parallelism"]))
@user_errors
def run_command(config_file: str | None, grid_names: str | None, assignments: tuple[str, ...], force: bool,
                **values: Any) -> None:
    """Train and evaluate the grid methods x datasets x bits x seeds, one record per run
    (or the grids of an experiment file, --config)."""
    ranks = world()
    echo = click.echo if ranks.is_main else (lambda *args, **kwargs: None)  # under torchrun, rank 0 alone reports
    line = command_line(values, assignments)
    runs, experiment = select_runs(config_file, grid_names, line)
    options = {key: run_option(key, line, experiment) for key in RUN_OPTIONS}
    root = Path(options["results"])
    jobs = [run.config for run in distinct_runs(runs, root)]
    ready = preflight(jobs, root, force=force, ranks=ranks, warn=lambda line: echo(line, err=True))
    for setup in ready.setups:
        echo(setup)
    failures = []
    labels = {id(config): f"[{i}/{len(jobs)}] {config.method} {display_name(config.dataset)} {config.bits} bits seed "
                          f"{config.seed}"
              for i, config in enumerate(jobs, start=1)}

    def report(config: Any, outcome: Any) -> None:
        label = labels[id(config)]
        if outcome.status == "done":
            metrics = outcome.record["metrics"]
            k = metrics["topk"]
            echo(f"{label}: {map_label(config, k)} = {metrics[f'map_expected@{k}']:.4f} (ties: expected; by index "
                 f"{metrics[f'map@{k}']:.4f}) ({outcome.record['timing']['train_s']:.1f} s training)")
        elif outcome.status == "skipped":
            echo(f"{label}: skipped, record exists at {outcome.folder} (--force reruns it)")
        elif outcome.status == "busy":
            echo(f"{label}: skipped, {outcome.reason}")
        else:
            echo(f"{label}: FAILED: {outcome.reason}", err=True)
            failures.append((label, outcome.reason))

    if options["launcher"] == "local":
        for config in jobs:
            report(config, execute(config, root, ready.datasets[data_key(config)], force=force))
    else:
        cluster = ClusterOptions(partition=options["partition"], gpus_per_job=options["gpus_per_job"],
                                 cpus_per_job=options["cpus_per_job"], time_limit_min=options["time_limit"],
                                 array_parallelism=options["array_parallelism"])
        submit(jobs, root, launcher=options["launcher"], options=cluster, force=force, report=report)
    if failures:
        echo(f"{len(failures)} of {len(jobs)} runs failed:", err=True)
        for label, reason in failures:
            echo(f"  {label}: {reason}", err=True)
        sys.exit(1)


@main.group("config")
def config_group() -> None:
    """Resolved run configurations, without running anything."""


@config_group.command("show")
@run_selection
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per run: folder, fingerprint, config, and the source of each value.")
@user_errors
def config_show_command(config_file: str | None, grid_names: str | None, assignments: tuple[str, ...],
                        as_json: bool, **values: Any) -> None:
    """Print the fully resolved configuration of each run that `hashbench run` with the same
    options would train, and where each value came from (runner default, method recipe,
    dataset, frozen recipe, file, command line). Nothing is loaded, trained or written."""
    line = command_line(values, assignments)
    runs, experiment = select_runs(config_file, grid_names, line)
    root = Path(run_option("results", line, experiment))
    click.echo(format_runs(distinct_runs(runs, root), root, experiment, as_json=as_json))


def _report_options() -> list[Callable[..., Any]]:
    """The options of ``report``, derived from :data:`hashbench.analysis.report.REPORT_OPTIONS`
    (the keys of an experiment file's ``[report]`` table)."""
    from hashbench.analysis.report import REPORT_OPTIONS

    options = [click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
                            help="An experiment file: its [report] table gives these options (results: its top "
                                 "level's by default), options given here override it, and every page names the "
                                 "file.")]
    for key, spec in REPORT_OPTIONS.items():
        name = f"--{key.replace('_', '-')}"
        if isinstance(spec, Param) and spec.kind is bool:
            options.append(click.option(f"{name}/--no-{key.replace('_', '-')}", key, default=None, help=_help(spec)))
        else:
            extra = "Comma-separated." if isinstance(spec, Items) else ""
            options.append(click.option(name, key, default=None, help=_help(spec, extra)))
    return options


def report_selection(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_report_options()):
        func = option(func)
    return func


@main.command("report")
@report_selection
@user_errors
def report_command(config_file: str | None, **given: Any) -> None:
    """Regenerate tables and figures from the records and saved codes (no retraining)."""
    from hashbench.analysis.report import REPORT_OPTIONS, build_report

    experiment = read_experiment(Path(config_file)) if config_file else None
    written = {**({"results": experiment.options["results"]} if experiment and "results" in experiment.options
                  else {}), **(experiment.report if experiment else {})}
    options = {}
    for key, spec in REPORT_OPTIONS.items():  # the command line's when given, else the file's, else the default
        if given.get(key) is not None:
            options[key] = spec.parse(key, given[key]) if isinstance(spec, Items) else spec.check(
                key, spec.from_text(given[key]))
        else:
            options[key] = written.get(key, spec.default if isinstance(spec, Param) else None)
    for key in ("notes", "appendix_notes"):
        if options[key] and not Path(options[key]).is_file():
            where = config_file if given.get(key) is None and config_file else f"--{key.replace('_', '-')}"
            raise HashbenchError(f"{where}: {key.replace('_', ' ')} file not found: {options[key]}")
    paths = build_report(
        Path(options["results"]), Path(options["out"]),
        datasets=options["datasets"], bits=options["bits"], command=" ".join(["hashbench", *sys.argv[1:]]),
        tsne_bits=options["tsne_bits"], tsne_methods=options["tsne_methods"],
        notes=Path(options["notes"]).read_text() if options["notes"] else None, ties=options["ties"],
        figures=options["figures"], baseline=options["baseline"],
        config=experiment.describe() if experiment else None,
        appendix_notes=Path(options["appendix_notes"]).read_text() if options["appendix_notes"] else None,
        appendix_tags=options["appendix_tags"])
    for path in paths:
        click.echo(str(path))


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="torchscript", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@user_errors
def export_command(run_dir: str, fmt: str, out: str, force: bool) -> None:
    """Export a finished run's hash function: image batch (uint8 (N, 3, H, W), or float in [0, 1]
    for TorchScript) -> packed codes (uint8 (N, ceil(bits / 8)), numpy.packbits order), transform inside."""
    from hashbench.deploy.export import export_run

    click.echo(str(export_run(Path(run_dir), fmt, Path(out), force=force)))


@main.command("index")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="The index file (default: RUN_DIR/index.npz).")
@click.option("--force", is_flag=True, help="Replace the index file if it exists.")
@user_errors
def index_command(run_dir: str, out: str | None, force: bool) -> None:
    """Write a run's database codes as a binary index file (packed codes; FAISS-ready bytes)."""
    from hashbench.deploy.index import INDEX
    from hashbench.deploy.model import artifact_path
    from hashbench.results import load_codes, save_arrays
    from hashbench.storage import refuse_to_replace

    folder = Path(run_dir)
    path = Path(out) if out else folder / INDEX
    refuse_to_replace(path, force)
    artifact_path(folder)  # a finished run with its model: the index is useless without it
    codes = load_codes(folder)["database_codes"]
    save_arrays(path, codes=codes)
    click.echo(f"{path}: {len(codes)} codes of {codes.shape[1]} bits")


@main.command("search")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="A query image file; repeatable.")
@click.option("--item", "items", multiple=True, type=int,
              help="A query item of the run's dataset by index, counted over all its items whatever their role "
                   "(list files: train.txt's lines, then test.txt's, then database.txt's; image folders: the files "
                   "sorted by path, test/ before train/), as results are; printed with its file and labels. "
                   "Repeatable.")
@click.option("--topk", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--backend", type=click.Choice(SEARCH_BACKENDS), default="auto", show_default=True,
              help="faiss (IndexBinaryFlat) when installed, else the project's packed-code kernel; same results.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@user_errors
def search_command(run_dir: str, images: tuple[str, ...], items: tuple[int, ...], topk: int, backend: str,
                   as_json: bool) -> None:
    """Encode query images with a run's model and print their top-k database items (path or index,
    labels, Hamming distance), ordered by Hamming distance, then database index."""
    import json

    from hashbench.deploy.search import format_results, search_run

    found = search_run(Path(run_dir), images=[Path(p) for p in images], items=list(items), topk=topk,
                       backend=backend)
    click.echo(json.dumps(found, indent=2) if as_json else format_results(found))


@main.group("data")
def data_group() -> None:
    """Build the standard datasets from their official releases; check any dataset."""


@data_group.command("prepare")
@click.argument("preset", type=click.Choice(list(LIST_PRESETS)))
@click.option("--from", "raw", required=True, type=click.Path(file_okay=False),
              help="The official release, unpacked (see docs/datasets.md for each layout).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for train.txt, test.txt, database.txt and dataset.json.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the query and training draws.")
@click.option("--queries", type=click.IntRange(min=1), default=None, help="Queries in all (default: the protocol's).")
@click.option("--train", type=click.IntRange(min=1), default=None,
              help="Training images in all (default: the protocol's).")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="imagenet100: a file of WNIDs, one a line, instead of HashNet's 100.")
@click.option("--skip-missing", is_flag=True,
              help="Leave out labelled images missing on disk (counted in dataset.json).")
@click.option("--force", is_flag=True, help="Replace the lists already in --out.")
@user_errors
def data_prepare_command(preset: str, raw: str, out: str, classes: str | None, **options: Any) -> None:
    """Write a standard dataset's list files and dataset.json from its official release."""
    from hashbench.data.prepare import prepare

    manifest = prepare(preset, Path(raw), Path(out), classes=Path(classes) if classes else None, **options)
    counts, standard = manifest["counts"], manifest["standard"]
    click.echo(f"{preset}: train {counts['train']:,} / query {counts['query']:,} / database {counts['database']:,} "
               f"(standard lists: {standard['train']:,} / {standard['query']:,} / {standard['database']:,}), "
               f"seed {manifest['seed']}, written to {out}")
    click.echo(f"check them with: hashbench data check listfile:{out}")


@data_group.command("check")
@click.argument("dataset")
@click.option("--data-root", default=None, type=click.Path(), help="Where the datasets live (default: ./data).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Split seed of seeded protocols.")
@click.option("--decode/--no-decode", default=True, show_default=True,
              help="Decode every image (finds truncated files) or only check that each exists.")
@click.option("--allow-outside-root", is_flag=True,
              help="Accept list-file image paths that are absolute or lead out of the list folder (as "
                   "--set allow_outside_root=true does for a run).")
@user_errors
def data_check_command(dataset: str, data_root: str | None, split_seed: int, decode: bool,
                       allow_outside_root: bool) -> None:
    """Print a dataset's sizes against its protocol, bad images and lines, label statistics,
    query/database overlap and list digests; exit non-zero on any problem."""
    from hashbench.data.check import check_dataset

    report = check_dataset(dataset, Path(data_root) if data_root else None, split_seed=split_seed, decode=decode,
                           allow_outside_root=allow_outside_root)
    click.echo(report.text())
    if report.problems:
        raise HashbenchError(report.summary())


if __name__ == "__main__":
    main()
