"""Running a grid: in this process, or one job per run through submitit on Slurm.

``slurm`` submits a job array through submitit (one job per unfinished run, with the
partition, GPUs per job, time limit and array parallelism given); ``submitit-local`` is
submitit's own local executor, the same code path with real subprocess jobs, which is how
the tests exercise it. Jobs write to the shared results store; runs whose record says
``done`` are not submitted, and the run claims (``claims.py``) keep a run that two
submissions share from training twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hashbench.config import RunConfig
from hashbench.data.check import screen_for_run
from hashbench.data.datasets import HashingDataset, LoadOptions, load_dataset
from hashbench.engine.runner import RunOutcome, execute
from hashbench.registry import METHODS
from hashbench.results import DamagedRecordError, read_record
from hashbench.validation import HashbenchError

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class ClusterOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time_limit_min: int = 240
    array_parallelism: int = 64


def load_run_dataset(config: RunConfig) -> HashingDataset:
    """The dataset a resolved config asks for (labels and split; pixels on first use), screened
    for the config's method (:func:`hashbench.data.check.screen_for_run`): refused when a run on
    it would mean nothing, else with its warnings, which the run's record keeps."""
    data = load_dataset(config.dataset, Path(config.data_root) if config.data_root else None, config.split_seed,
                        LoadOptions(skip_corrupt=config.skip_corrupt, download=config.download,
                                    allow_outside_root=config.allow_outside_root))
    data.warnings = screen_for_run(data, supervised=METHODS.get(config.method).supervised)
    return data


def run_job(config: RunConfig, results_root: str, force: bool) -> RunOutcome:
    """One run in a fresh process: what each submitted job executes."""
    outcome = execute(config, Path(results_root), load_run_dataset(config), force=force)
    outcome.record = None  # the record is on disk; keep the pickled result small
    return outcome


def recorded_done(folder: Path) -> bool:
    """Whether the run in ``folder`` has a record that says ``done`` (a damaged one does not: its job reports it)."""
    try:
        return (read_record(folder) or {}).get("status") == "done"
    except DamagedRecordError:
        return False


def submit(configs: Iterable[RunConfig], results_root: Path, *, launcher: str, options: ClusterOptions,
           force: bool, report: Callable[[RunConfig, RunOutcome], None]) -> list[RunOutcome]:
    """Submit every unfinished run as one job of an array, wait, and report each outcome."""
    try:
        import submitit
    except ImportError:
        raise HashbenchError("launcher slurm needs submitit: pip install 'hashbench[cluster]'") from None
    pending = [c for c in configs if force or not recorded_done(c.folder(results_root))]
    if not pending:
        return []
    executor = submitit.AutoExecutor(folder=results_root / ".submitit",
                                     cluster="local" if launcher == "submitit-local" else "slurm")
    if launcher == "slurm":
        executor.update_parameters(slurm_partition=options.partition, gpus_per_node=options.gpus_per_job,
                                   cpus_per_task=options.cpus_per_job, timeout_min=options.time_limit_min,
                                   slurm_array_parallelism=options.array_parallelism, name="hashbench")
    else:
        executor.update_parameters(timeout_min=options.time_limit_min)
    jobs = executor.map_array(run_job, pending, [str(results_root)] * len(pending), [force] * len(pending))
    outcomes = []
    for config, job in zip(pending, jobs, strict=True):
        try:
            outcome = job.result()
        except Exception as err:  # the job died (killed, out of memory, node failure)
            outcome = RunOutcome(config, config.folder(results_root), "failed", reason=f"job {job.job_id}: {err}")
        with contextlib.suppress(DamagedRecordError):  # the job's failure says so
            outcome.record = read_record(outcome.folder)
        report(config, outcome)
        outcomes.append(outcome)
    return outcomes
