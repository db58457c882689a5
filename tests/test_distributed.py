"""Scale-out on existing engines: torchrun/DDP with gloo on the CPU, and submitit's local executor."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from helpers import subprocess_env

from hashbench.engine.distributed import World
from hashbench.registry import METHODS
from hashbench.results import run_dir

# A linear head: dropout in CSQ's reference MLP head draws different masks per rank, which
# is noise around the same objective, not the exact match this test asserts.
ARGS = ["--methods", "csq,dpsh,itq,lsh", "--bits", "16", "--epochs", "6", "--no-progress", "--set", "head=linear"]
#: On frozen features (no BatchNorm in the trained part) two processes optimise exactly the
#: single-process objective; only the order of floating-point reductions differs.
TOLERANCE = 0.005
#: ARGS on frozen features, and a fine-tuned CSQ: two grids of one experiment file, so that
#: one torchrun launch (three interpreters) serves both tests below.
EXPERIMENT = """\
bits = [16]
progress = false
results = "{results}"

[[grid]]
name = "frozen"
methods = ["csq", "dpsh", "itq", "lsh"]
frozen_backbone = true
epochs = 6
head = "linear"

[[grid]]
name = "fine-tuned"
methods = ["csq"]
epochs = 4
tag = "fine-tuned"
optimizer = "adam"          # the quickstart's recipe for a small CNN from scratch (experiments/digits.toml)
lr = 1e-3
backbone_lr_mult = 1.0
weight_decay = 1e-5
scheduler = "none"
augment = "none"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def torchrun_results(tmp_path_factory):
    """The results of one two-process launch of EXPERIMENT, its stdout, and its feature cache."""
    root = tmp_path_factory.mktemp("ddp")
    config = root / "experiment.toml"
    config.write_text(EXPERIMENT.format(results=root / "results"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                           "-m", "hashbench", "run", "--config", str(config)],
                          env=subprocess_env(HASHBENCH_CACHE=str(root / "cache")), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "results", proc.stdout, root / "cache"


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process(cli, tmp_path, monkeypatch, torchrun_results):
    """Gradient methods reach the single-process mAP; closed-form ones (no optimizer, no DDP
    wrapper: every rank fits the same state, rank 0 writes it) the very same metrics."""
    double, stdout, cache = torchrun_results
    monkeypatch.setenv("HASHBENCH_CACHE", str(cache))  # the same cached features
    single = tmp_path / "single"
    assert cli("run", *ARGS, "--frozen-backbone", "--results", single).exit_code == 0
    assert stdout.count(": mAP@") == 5  # the experiment's five runs, each reported by rank 0 alone
    for method in ("csq", "dpsh", "itq", "lsh"):
        one = json.loads((run_dir(single, "digits", method, 16, 0) / "result.json").read_text())
        two = json.loads((run_dir(double, "digits", method, 16, 0) / "result.json").read_text())
        assert two["world_size"] == 2 and two["status"] == "done"
        assert (run_dir(double, "digits", method, 16, 0) / "log.txt").read_text().count(" config {") == 1
        if METHODS.get(method).closed_form:
            assert two["metrics"] == one["metrics"]
        else:
            assert two["metrics"]["map_expected@1597"] == pytest.approx(one["metrics"]["map_expected@1597"],
                                                                       abs=TOLERANCE)


@pytest.mark.slow
def test_two_process_fine_tuning_trains_well(torchrun_results):
    """With a fine-tuned backbone BatchNorm sees half a batch per rank, so codes differ from
    one process's; the run must still complete and learn."""
    double, _, _ = torchrun_results
    record = json.loads((run_dir(double, "digits", "csq", 16, 0, tag="fine-tuned") / "result.json").read_text())
    assert record["world_size"] == 2 and not record["config"]["frozen_backbone"]
    assert record["metrics"]["map_expected@1597"] > 0.7


def test_batch_must_split_evenly_over_processes(cli, tmp_path, monkeypatch):
    """Checked before any run starts, as rank 0 of two processes sees it (torchrun itself is
    launched for the two tests above)."""
    monkeypatch.setattr("hashbench.cli.world", lambda: World(rank=0, size=2))
    result = cli("run", "--methods", "csq", "--bits", "16", "--batch-size", "63", "--no-progress",
                 "--results", tmp_path)
    assert result.exit_code != 0
    assert "batch_size must be a multiple of the 2 processes; got 63" in result.output
    assert not list(tmp_path.iterdir())  # refused before any run


@pytest.mark.slow
def test_submitit_local_executor_runs_the_grid_and_skips_finished_runs(cli, tmp_path, single_threaded_children):
    # one job: each is an interpreter of its own, and one shows submission and skipping alike
    args = ["run", "--methods", "csq", "--bits", "16", "--epochs", "2", "--results", tmp_path,
            "--launcher", "submitit-local", "--no-progress"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir(tmp_path, "digits", "csq", 16, 0) / "result.json").read_text())
    assert record["status"] == "done"
    jobs_before = len(list((tmp_path / ".submitit").rglob("*_submitted.pkl")))
    again = cli(*args)
    assert again.exit_code == 0
    assert len(list((tmp_path / ".submitit").rglob("*_submitted.pkl"))) == jobs_before  # nothing resubmitted
