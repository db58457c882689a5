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

from hashbench.config import CONFIG_KEYS, parse_assignments, resolve_config
from hashbench.data.datasets import PATTERNS, LoadOptions, get_dataset, load_dataset
from hashbench.engine.distributed import world
from hashbench.engine.launch import LAUNCHERS, ClusterOptions, submit
from hashbench.engine.runner import execute
from hashbench.models.backbones import build_backbone
from hashbench.registry import BACKBONES, DATASETS, METHODS, UnknownNameError
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
        "methods": [(name, METHODS.summary(name)) for name in METHODS.names()],
        "datasets": [(name, DATASETS.get(name).summary) for name in DATASETS.names()]
        + [(spec.name, spec.summary) for spec in PATTERNS.values()],
        "backbones": [(name, BACKBONES.get(name).summary) for name in BACKBONES.names()],
    }
    for section, rows in sections.items():
        if what not in (section, "all"):
            continue
        if what == "all":
            click.echo(f"{section}:")
        width = max(len(name) for name, _ in rows)
        for name, summary in rows:
            click.echo(f"  {name:<{width}}  {summary}")


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
    main_process = world().is_main  # under torchrun, rank 0 alone reports
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
    unknown = [k for k in overrides if k not in CONFIG_KEYS
               and not any(k in cls.defaults for cls in method_classes.values())]
    if unknown:
        raise HashbenchError(f"unknown config key {unknown[0]!r} (not a config key nor a hyperparameter of "
                             f"{', '.join(method_names)})")
    # Load every dataset first (labels and split only): missing data fails before any run.
    split_seed = check_int("split_seed", overrides.get("split_seed", 0), 0)
    data_root = Path(overrides["data_root"]) if "data_root" in overrides else None
    load_options = LoadOptions(skip_corrupt=bool(overrides.get("skip_corrupt", False)),
                               download=bool(overrides.get("download", False)))
    loaded = {name: (get_dataset(name)[0], load_dataset(name, data_root, split_seed, load_options))
              for name in dataset_names}
    jobs = []
    for dataset_name, method_name, n_bits, seed in itertools.product(dataset_names, method_names, bit_list,
                                                                     seed_list):
        cls = method_classes[method_name]
        own = {k: v for k, v in overrides.items() if k in CONFIG_KEYS or k in cls.defaults}
        jobs.append(resolve_config(method=method_name, method_cls=cls, dataset=dataset_name,
                                   dataset_defaults=loaded[dataset_name][0].defaults, bits=n_bits, seed=seed,
                                   overrides=own))
    # Build each backbone once before any run: unknown names, missing or ill-fitting weights
    # are errors of the whole command, not failures of every run.
    for backbone, weights, weights_path in sorted({(c.backbone, c.weights, c.weights_path) for c in jobs},
                                                  key=str):
        build_backbone(backbone, weights, weights_path)
    root = Path(results_root)
    failures = []
    labels = {id(config): f"[{i}/{len(jobs)}] {config.method} {config.dataset} {config.bits} bits seed {config.seed}"
              for i, config in enumerate(jobs, start=1)}

    def report(config: Any, outcome: Any) -> None:
        label = labels[id(config)]
        if outcome.status == "done":
            metrics = outcome.record["metrics"]
            echo(f"{label}: mAP@{metrics['topk']} = {metrics['map']:.4f} "
                 f"({outcome.record['timing']['train_s']:.1f} s training)")
        elif outcome.status == "skipped":
            echo(f"{label}: skipped, record exists at {outcome.folder} (--force reruns it)")
        elif outcome.status == "busy":
            echo(f"{label}: skipped, {outcome.reason}")
        else:
            echo(f"{label}: FAILED: {outcome.reason}", err=True)
            failures.append((label, outcome.reason))

    if launcher == "local":
        for config in jobs:
            report(config, execute(config, root, loaded[config.dataset][1], force=force))
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
@click.option("--notes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Markdown file whose text goes at the top of the report page (how to read the numbers).")
@user_errors
def report_command(results_root: str, out_dir: str, datasets: str | None, bits: str | None,
                   tsne_bits: int | None, notes: str | None) -> None:
    """Regenerate tables and figures from the records and saved codes (no retraining)."""
    from hashbench.analysis.report import build_report

    written = build_report(
        Path(results_root), Path(out_dir),
        datasets=split_list(datasets, "--datasets") if datasets else None,
        bits=[check_bits(b) for b in split_list(bits, "--bits")] if bits else None,
        command=" ".join(["hashbench", *sys.argv[1:]]),
        tsne_bits=tsne_bits,
        notes=Path(notes).read_text() if notes else None,
    )
    for path in written:
        click.echo(str(path))


if __name__ == "__main__":
    main()
