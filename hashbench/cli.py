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
from click.core import ParameterSource

from hashbench.config import (
    DEVICES,
    RUNTIME_KEYS,
    RunConfig,
    config_fingerprint,
    parse_assignments,
    parse_value,
)
from hashbench.data.datasets import PATTERNS, display_name
from hashbench.data.standard import LIST_PRESETS
from hashbench.deploy.export import FORMATS
from hashbench.deploy.index import BACKENDS as SEARCH_BACKENDS
from hashbench.engine.distributed import world
from hashbench.engine.launch import LAUNCHERS, ClusterOptions, load_run_dataset, submit
from hashbench.engine.runner import execute, map_label
from hashbench.engine.tracking import require_tensorboard
from hashbench.experiment import Experiment, PlannedRun, distinct_runs, format_runs, load_experiment, plan_runs
from hashbench.method import family_key
from hashbench.models.backbones import build_backbone
from hashbench.registry import BACKBONES, DATASETS, METHODS, UnknownNameError
from hashbench.results import read_record
from hashbench.validation import HashbenchError, check_bits, check_int


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors about user input into click's one-line errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (HashbenchError, UnknownNameError) as err:
            raise click.ClickException(str(err)) from None

    return wrapper


def split_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise HashbenchError(f"{what} must name at least one item; got {text!r}")
    return items


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
    """What a dataset trains with unless told otherwise: backbone, weights, image size, recipe."""
    backbone = defaults.get("backbone", RunConfig.backbone)
    weights = defaults.get("weights", RunConfig.weights) or "random init"
    size = defaults.get("image_size") or "224 (the weights')"
    recipe = ", ".join(f"{k} {v}" for k, v in defaults.items() if k not in ("backbone", "weights", "image_size"))
    return (f"default: backbone {backbone} ({weights}), image size {size}; "
            f"{'dataset recipe: ' + recipe if recipe else 'each method its reference recipe'}")


def data_key(config: RunConfig) -> tuple[Any, ...]:
    """What decides how a dataset is loaded (runs that agree on it share one load)."""
    return config.dataset, config.data_root, config.split_seed, config.skip_corrupt, config.download


def describe_setup(config: RunConfig) -> str:
    size = f"{config.image_size} px" if config.image_size else "the weights' image size"
    mode = ("frozen backbone (cached features, no augmentation)" if config.frozen_backbone
            else f"fine-tuned, augment {config.augment}")
    weights = config.weights_path or config.weights or "random init"
    return f"{config.dataset}: backbone {config.backbone} ({weights}), {size}, {mode}"


def refuse_other_config(config: RunConfig, root: Path) -> None:
    """A finished record made with another config is never reused or replaced silently."""
    record = read_record(config.folder(root))
    if record is None or record.get("status") != "done" or "config" not in record:
        return
    if record.get("fingerprint", config_fingerprint(record["config"])) == config.fingerprint():
        return
    wanted = {**config.as_dict(), **{f"hparams.{k}": v for k, v in config.hparams.items()}}
    stored = {**record["config"], **{f"hparams.{k}": v for k, v in record["config"].get("hparams", {}).items()}}
    changed = [k for k in sorted(wanted) if k not in RUNTIME_KEYS and k != "hparams" and stored.get(k) != wanted[k]]
    detail = ", ".join(f"{k} {stored.get(k)!r} -> {wanted[k]!r}" for k in changed[:3]) or "an older schema"
    raise HashbenchError(f"{config.folder(root)} holds a finished run made with another config ({detail}); "
                         "--force replaces it (the old record is archived), or use --set tag=NAME or another --results")


def given(name: str) -> bool:
    """Whether the user gave option ``name`` on the command line (it then overrides a config file)."""
    return click.get_current_context().get_parameter_source(name) not in (
        None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


#: The options of ``run`` and ``config show``: which runs, configured how.
RUN_SELECTION = [
    click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
                 help="An experiment file (TOML: grids, [set], [method.NAME] tables; see the README); options "
                      "given on the command line override it."),
    click.option("--grid", "grid_names", default=None, metavar="NAMES",
                 help="Only these [[grid]] tables of --config (comma-separated; default: all, in file order)."),
    click.option("--methods", default=None,
                 help="Comma-separated method names (see `hashbench list methods`); required without --config."),
    click.option("--bits", default="16,32,64", show_default=True, help="Comma-separated code lengths."),
    click.option("--datasets", default="digits", show_default=True,
                 help="Comma-separated dataset names; NAME=listfile:DIR (or imagefolder:DIR) shows a folder dataset as "
                      "NAME in results folders, tables and figures."),
    click.option("--seeds", default="0", show_default=True, help="Comma-separated training seeds."),
    click.option("--backbone", default=None, help="Backbone name (default: the dataset's)."),
    click.option("--weights", "weights_path", default=None, type=click.Path(dir_okay=False),
                 help="A local state dict for the backbone instead of torchvision's pretrained weights."),
    click.option("--frozen-backbone/--fine-tune", "frozen_backbone", default=None,
                 help="Train only the hash head(s) on cached backbone features."),
    click.option("--epochs", type=int, default=None),
    click.option("--batch-size", type=int, default=None),
    click.option("--lr", type=float, default=None),
    click.option("--device", type=click.Choice(DEVICES), default=None),
    click.option("--results", "results_root", default="results", show_default=True,
                 type=click.Path(file_okay=False)),
    click.option("--data-root", default=None, type=click.Path(), help="Where the datasets live (default: ./data)."),
    click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                 help="Any config key or method hyperparameter; repeatable."),
    click.option("--progress/--no-progress", default=True, help="Show a progress bar per run."),
]


def run_selection(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add :data:`RUN_SELECTION`'s options to a command."""
    for option in reversed(RUN_SELECTION):
        func = option(func)
    return func


def select_runs(*, config_file: str | None, grid_names: str | None, methods: str | None, bits: str, datasets: str,
                seeds: str, assignments: tuple[str, ...], options: dict[str, Any]
                ) -> tuple[list[PlannedRun], Experiment | None]:
    """Every run the options ask for (the grids of the experiment file, if one is given,
    under the command line's options), resolved and validated before anything loads or trains."""
    experiment = load_experiment(Path(config_file)) if config_file else None
    if grid_names is not None and experiment is None:
        raise HashbenchError("--grid chooses among the [[grid]] tables of an experiment file: give --config FILE")
    overrides = {k: v for k, v in options.items() if v is not None and given(k)}
    if "weights_path" in overrides:
        overrides["weights"] = None
    overrides.update(parse_assignments(assignments))
    runs = []
    wanted = None if grid_names is None else split_list(grid_names, "--grid")
    for grid in experiment.select(wanted) if experiment else [None]:
        written = grid.options if grid else {}
        if given("methods") or "methods" not in written:
            if methods is None:
                raise click.UsageError("Missing option '--methods' (or --config FILE with methods = [...])")
            method_names = split_list(methods, "--methods")
            for name in method_names:
                METHODS.get(name)
        else:
            method_names = written["methods"]
        line = {name: given(name) or name not in written for name in ("bits", "seeds", "datasets")}
        runs += plan_runs(
            methods=method_names,
            bits=[check_bits(parse_value(b)) for b in split_list(bits, "--bits")] if line["bits"] else written["bits"],
            seeds=([check_int("seed", parse_value(s), 0) for s in split_list(seeds, "--seeds")] if line["seeds"]
                   else written["seeds"]),
            datasets=split_list(datasets, "--datasets") if line["datasets"] else written["datasets"],
            overrides=overrides, grid=grid)
    return runs, experiment


def command_option(name: str, value: Any, experiment: Experiment | None, key: str | None = None) -> Any:
    """A run option: the command line's when given, else the experiment file's, else its default."""
    written = experiment.options if experiment else {}
    return value if given(name) or (key or name) not in written else written[key or name]


@main.command("run")
@run_selection
@click.option("--force", is_flag=True, help="Rerun runs that already have a record (the old one is archived).")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local", show_default=True,
              help="local: in this process; slurm: one submitit job per run; submitit-local: submitit's local "
                   "executor (real subprocess jobs).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--gpus-per-job", type=int, default=1, show_default=True)
@click.option("--cpus-per-job", type=int, default=8, show_default=True)
@click.option("--time-limit", "time_limit_min", type=int, default=240, show_default=True, help="Minutes per job.")
@click.option("--array-parallelism", type=int, default=64, show_default=True, help="Jobs of the array at once.")
@user_errors
def run_command(config_file: str | None, grid_names: str | None, methods: str | None, bits: str, datasets: str,
                seeds: str, assignments: tuple[str, ...], results_root: str, force: bool, launcher: str,
                partition: str | None, gpus_per_job: int, cpus_per_job: int, time_limit_min: int,
                array_parallelism: int, **options: Any) -> None:
    """Train and evaluate the grid methods x datasets x bits x seeds, one record per run
    (or the grids of an experiment file, --config)."""
    ranks = world()
    main_process = ranks.is_main  # under torchrun, rank 0 alone reports
    echo = click.echo if main_process else (lambda *args, **kwargs: None)

    # Resolve and validate every run's config before anything loads or trains: the runs and
    # the data loading below act on these resolved values only.
    runs, experiment = select_runs(config_file=config_file, grid_names=grid_names, methods=methods, bits=bits,
                                   datasets=datasets, seeds=seeds, assignments=assignments, options=options)
    results_root = command_option("results_root", results_root, experiment, "results")
    jobs = [run.config for run in distinct_runs(runs, Path(results_root))]
    launcher = command_option("launcher", launcher, experiment)
    cluster = ClusterOptions(
        partition=command_option("partition", partition, experiment),
        gpus_per_job=command_option("gpus_per_job", gpus_per_job, experiment),
        cpus_per_job=command_option("cpus_per_job", cpus_per_job, experiment),
        time_limit_min=command_option("time_limit_min", time_limit_min, experiment, "time_limit"),
        array_parallelism=command_option("array_parallelism", array_parallelism, experiment))
    if any(config.tensorboard for config in jobs):
        require_tensorboard()
    for config in jobs:  # each rank trains on an equal share of every batch
        if config.batch_size % ranks.size:
            raise HashbenchError(f"batch_size must be a multiple of the {ranks.size} processes; "
                                 f"got {config.batch_size}")
    # Load every dataset (labels and split only): missing data fails before any run.
    loaded: dict[tuple[Any, ...], Any] = {}
    for config in jobs:
        key = data_key(config)
        if key not in loaded:
            loaded[key] = load_run_dataset(config)
        METHODS.get(config.method).check_setup(bits=config.bits, num_classes=loaded[key].num_classes,
                                               params=config.hparams)
    root = Path(results_root)
    if not force:
        for config in jobs:
            refuse_other_config(config, root)
    # Build each backbone once before any run: unknown names, missing or ill-fitting weights
    # are errors of the whole command, not failures of every run.
    for backbone, weights, weights_path in sorted({(c.backbone, c.weights, c.weights_path) for c in jobs},
                                                  key=str):
        build_backbone(backbone, weights, weights_path)
    for setup in dict.fromkeys(describe_setup(c) for c in jobs):
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

    if launcher == "local":
        for config in jobs:
            report(config, execute(config, root, loaded[data_key(config)], force=force))
    else:
        submit(jobs, root, launcher=launcher, options=cluster, force=force, report=report)
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
def config_show_command(config_file: str | None, grid_names: str | None, methods: str | None, bits: str,
                        datasets: str, seeds: str, assignments: tuple[str, ...], results_root: str, as_json: bool,
                        **options: Any) -> None:
    """Print the fully resolved configuration of each run that `hashbench run` with the same
    options would train, and where each value came from (runner default, method default or
    recipe, dataset, frozen recipe, file, command line). Nothing is loaded, trained or written."""
    runs, experiment = select_runs(config_file=config_file, grid_names=grid_names, methods=methods, bits=bits,
                                   datasets=datasets, seeds=seeds, assignments=assignments, options=options)
    root = Path(command_option("results_root", results_root, experiment, "results"))
    click.echo(format_runs(distinct_runs(runs, root), root, experiment, as_json=as_json))


@main.command("report")
@click.option("--results", "results_root", default="results", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--datasets", default=None, help="Only these datasets (comma-separated).")
@click.option("--bits", default=None, help="Only these code lengths (comma-separated).")
@click.option("--tsne-bits", type=int, default=None, help="Code length of the t-SNE plots (default: the longest).")
@click.option("--tsne-methods", default=None, metavar="METHODS",
              help="Draw t-SNE plots for these methods only (comma-separated; 'none' for none; default: all). "
                   "Each plot takes seconds of CPU: a grid of 40 methods on two datasets spends most of the "
                   "report's time on them.")
@click.option("--notes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Markdown file whose text goes at the top of the report page (how to read the numbers).")
@click.option("--ties", type=click.Choice(["expected", "index"]), default="expected", show_default=True,
              help="mAP in the tables with ties at equal Hamming distance as the expectation over random orders "
                   "(independent of database order) or broken by database index (the literature's figure).")
@click.option("--baseline", default=None, metavar="METHOD",
              help="Add a table of every method's mAP gain over this one (e.g. itq) in the same column.")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="Draw the figures (PR, P@N, code distances, training curves, t-SNE) or write the tables alone.")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="An experiment file: its [report] table gives these options (results: its top level's by "
                   "default), options given here override it, and every page names the file.")
@user_errors
def report_command(results_root: str, out_dir: str, datasets: str | None, bits: str | None,
                   tsne_bits: int | None, tsne_methods: str | None, notes: str | None, ties: str, figures: bool,
                   baseline: str | None, config_file: str | None) -> None:
    """Regenerate tables and figures from the records and saved codes (no retraining)."""
    from hashbench.analysis.report import build_report

    experiment = load_experiment(Path(config_file)) if config_file else None
    written = {**({"results": experiment.options["results"]} if experiment and "results" in experiment.options
                  else {}), **(experiment.report if experiment else {})}
    options = {  # the command line's when given, else the file's, else the default
        "results": results_root, "out": out_dir,
        "datasets": split_list(datasets, "--datasets") if datasets else None,
        "bits": [check_bits(parse_value(b)) for b in split_list(bits, "--bits")] if bits else None,
        "tsne_bits": tsne_bits,
        "tsne_methods": None if tsne_methods is None else
        [] if tsne_methods == "none" else split_list(tsne_methods, "--tsne-methods"),
        "notes": notes, "ties": ties, "figures": figures, "baseline": baseline,
    }
    names = {"results": "results_root", "out": "out_dir"}
    options.update({key: value for key, value in written.items() if not given(names.get(key, key))})
    if options["notes"] and not Path(options["notes"]).is_file():
        raise HashbenchError(f"{config_file}: [report] notes: file not found: {options['notes']}")
    paths = build_report(
        Path(options["results"]), Path(options["out"]),
        datasets=options["datasets"],
        bits=options["bits"],
        command=" ".join(["hashbench", *sys.argv[1:]]),
        tsne_bits=options["tsne_bits"],
        tsne_methods=options["tsne_methods"],
        notes=Path(options["notes"]).read_text() if options["notes"] else None,
        ties=options["ties"],
        figures=options["figures"],
        baseline=options["baseline"],
        config=experiment.describe() if experiment else None,
    )
    for path in paths:
        click.echo(str(path))


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="torchscript", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@user_errors
def export_command(run_dir: str, fmt: str, out: str) -> None:
    """Export a finished run's hash function: image batch (uint8 (N, 3, H, W), or float in [0, 1]
    for TorchScript) -> packed codes (uint8 (N, ceil(bits / 8)), numpy.packbits order), transform inside."""
    from hashbench.deploy.export import export_run

    click.echo(str(export_run(Path(run_dir), fmt, Path(out))))


@main.command("index")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="The index file (default: RUN_DIR/index.npz).")
@user_errors
def index_command(run_dir: str, out: str | None) -> None:
    """Write a run's database codes as a binary index file (packed codes; FAISS-ready bytes)."""
    from hashbench.deploy.index import INDEX
    from hashbench.deploy.model import artifact_path
    from hashbench.results import load_codes, save_arrays

    folder = Path(run_dir)
    artifact_path(folder)  # a finished run with its model: the index is useless without it
    codes = load_codes(folder)["database_codes"]
    path = Path(out) if out else folder / INDEX
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
              help="The official release, unpacked (see the README's Datasets section for each layout).")
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
@user_errors
def data_check_command(dataset: str, data_root: str | None, split_seed: int, decode: bool) -> None:
    """Print a dataset's sizes against its protocol, bad images and lines, label statistics,
    query/database overlap and list digests; exit non-zero on any problem."""
    from hashbench.data.check import check_dataset

    report = check_dataset(dataset, Path(data_root) if data_root else None, split_seed=split_seed, decode=decode)
    click.echo(report.text())
    if report.problems:
        raise HashbenchError(report.summary())


if __name__ == "__main__":
    main()
