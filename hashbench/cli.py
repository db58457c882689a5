"""The command line: ``hashbench list``, ``hashbench run``, ``hashbench report``.

Thin by design: parse, validate, call the library. A user mistake is one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hashbench.config import (
    CONFIG_KEYS,
    RUNTIME_KEYS,
    RunConfig,
    config_fingerprint,
    parse_assignments,
    resolve_config,
    unknown_key_message,
)
from hashbench.data.datasets import PATTERNS, get_dataset
from hashbench.engine.distributed import world
from hashbench.engine.launch import LAUNCHERS, ClusterOptions, load_run_dataset, submit
from hashbench.engine.runner import execute
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
    mode = "frozen backbone (cached features)" if config.frozen_backbone else f"fine-tuned, augment {config.augment}"
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


@main.command("run")
@click.option("--methods", required=True, help="Comma-separated method names (see `hashbench list methods`).")
@click.option("--bits", default="16,32,64", show_default=True, help="Comma-separated code lengths.")
@click.option("--datasets", default="digits", show_default=True, help="Comma-separated dataset names.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated training seeds.")
@click.option("--backbone", default=None, help="Backbone name (default: the dataset's).")
@click.option("--weights", "weights_path", default=None, type=click.Path(dir_okay=False),
              help="A local state dict for the backbone instead of torchvision's pretrained weights.")
@click.option("--frozen-backbone/--fine-tune", "frozen_backbone", default=None,
              help="Train only the hash head(s) on cached backbone features.")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--results", "results_root", default="results", show_default=True, type=click.Path(file_okay=False))
@click.option("--data-root", default=None, type=click.Path(), help="Where the datasets live (default: ./data).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Any config key or method hyperparameter; repeatable.")
@click.option("--force", is_flag=True, help="Rerun runs that already have a record (the old one is archived).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar per run.")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local", show_default=True,
              help="local: in this process; slurm: one submitit job per run; submitit-local: submitit's local "
                   "executor (real subprocess jobs).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--gpus-per-job", type=int, default=1, show_default=True)
@click.option("--cpus-per-job", type=int, default=8, show_default=True)
@click.option("--time-limit", "time_limit_min", type=int, default=240, show_default=True, help="Minutes per job.")
@click.option("--array-parallelism", type=int, default=64, show_default=True, help="Jobs of the array at once.")
@user_errors
def run_command(methods: str, bits: str, datasets: str, seeds: str, assignments: tuple[str, ...],
                results_root: str, force: bool, launcher: str, partition: str | None, gpus_per_job: int,
                cpus_per_job: int, time_limit_min: int, array_parallelism: int, **options: Any) -> None:
    """Train and evaluate the grid methods x datasets x bits x seeds, one record per run."""
    ranks = world()
    main_process = ranks.is_main  # under torchrun, rank 0 alone reports
    echo = click.echo if main_process else (lambda *args, **kwargs: None)

    method_names = split_list(methods, "--methods")
    method_classes = {name: METHODS.get(name) for name in method_names}
    bit_list = [check_bits(b) for b in split_list(bits, "--bits")]
    seed_list = [check_int("seed", s, 0) for s in split_list(seeds, "--seeds")]
    dataset_names = split_list(datasets, "--datasets")
    overrides = {k: v for k, v in options.items() if v is not None}
    if "weights_path" in overrides:
        overrides["weights"] = None
    overrides.update(parse_assignments(assignments))
    for key in overrides:  # a key no method of the grid knows is a typo, not a per-method setting
        if key not in CONFIG_KEYS and not any(key in cls.params for cls in method_classes.values()):
            first = method_names[0]
            raise HashbenchError(unknown_key_message(key, first, list(method_classes[first].params)))
    # Resolve and validate every run's config before anything loads or trains: the runs and
    # the data loading below act on these resolved values only.
    jobs = []
    for dataset_name, method_name, n_bits, seed in itertools.product(dataset_names, method_names, bit_list,
                                                                     seed_list):
        cls = method_classes[method_name]
        own = {k: v for k, v in overrides.items() if k in CONFIG_KEYS or k in cls.params}
        jobs.append(resolve_config(method=method_name, method_cls=cls, dataset=dataset_name,
                                   dataset_defaults=get_dataset(dataset_name)[0].defaults, bits=n_bits, seed=seed,
                                   overrides=own))
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
        method_classes[config.method].check_setup(bits=config.bits, num_classes=loaded[key].num_classes,
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
    labels = {id(config): f"[{i}/{len(jobs)}] {config.method} {config.dataset} {config.bits} bits seed {config.seed}"
              for i, config in enumerate(jobs, start=1)}

    def report(config: Any, outcome: Any) -> None:
        label = labels[id(config)]
        if outcome.status == "done":
            metrics = outcome.record["metrics"]
            k = metrics["topk"]
            echo(f"{label}: mAP@{k} = {metrics[f'map_expected@{k}']:.4f} (ties: expected; by index "
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
        options_ = ClusterOptions(partition=partition, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                                  time_limit_min=time_limit_min, array_parallelism=array_parallelism)
        submit(jobs, root, launcher=launcher, options=options_, force=force, report=report)
    if failures:
        echo(f"{len(failures)} of {len(jobs)} runs failed:", err=True)
        for label, reason in failures:
            echo(f"  {label}: {reason}", err=True)
        sys.exit(1)


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
@user_errors
def report_command(results_root: str, out_dir: str, datasets: str | None, bits: str | None,
                   tsne_bits: int | None, tsne_methods: str | None, notes: str | None, ties: str, figures: bool,
                   baseline: str | None) -> None:
    """Regenerate tables and figures from the records and saved codes (no retraining)."""
    from hashbench.analysis.report import build_report

    written = build_report(
        Path(results_root), Path(out_dir),
        datasets=split_list(datasets, "--datasets") if datasets else None,
        bits=[check_bits(b) for b in split_list(bits, "--bits")] if bits else None,
        command=" ".join(["hashbench", *sys.argv[1:]]),
        tsne_bits=tsne_bits,
        tsne_methods=None if tsne_methods is None else
        [] if tsne_methods == "none" else split_list(tsne_methods, "--tsne-methods"),
        notes=Path(notes).read_text() if notes else None,
        ties=ties,
        figures=figures,
        baseline=baseline,
    )
    for path in written:
        click.echo(str(path))


if __name__ == "__main__":
    main()
