"""Interrupted runs resume from their checkpoint and end exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import THREAD_LIMITS, planned, subprocess_env

from hashbench.engine.checkpoint import read_checkpoint, save_checkpoint
from hashbench.results import load_codes

ARGS = ["--methods", "csq", "--bits", "16", "--epochs", "3", "--no-progress"]


def run_folder(root):
    return root / "digits" / "csq" / "16" / "seed0"


@pytest.fixture
def run_to_end(cli):
    """A run in this process (only the interrupted one needs a process of its own to kill),
    with the one thread per pool the interrupted run had: another thread count sums in
    another order, which is not what this test is about."""
    def run(results) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(int(THREAD_LIMITS["OMP_NUM_THREADS"]))
        try:
            result = cli("run", *ARGS, "--results", results)
        finally:
            torch.set_num_threads(threads)
        assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_identical_codes(tmp_path, run_to_end):
    reference = tmp_path / "reference"
    run_to_end(reference)

    interrupted = tmp_path / "interrupted"
    checkpoint = run_folder(interrupted) / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "hashbench.cli", "run", *ARGS, "--results", str(interrupted)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env())
    deadline = time.monotonic() + 300
    try:
        while not checkpoint.exists() and proc.poll() is None:  # kill right after the first epoch's checkpoint
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoint.exists(), "the run finished before it could be killed"
    assert not (run_folder(interrupted) / "result.json").exists()
    epoch_at_kill = read_checkpoint(checkpoint)["epoch"]
    assert 1 <= epoch_at_kill < 3

    run_to_end(interrupted)
    assert f"resumed from {checkpoint} at epoch" in (run_folder(interrupted) / "log.txt").read_text()
    a, b = load_codes(run_folder(reference)), load_codes(run_folder(interrupted))
    np.testing.assert_array_equal(a["query_codes"], b["query_codes"])
    np.testing.assert_array_equal(a["database_codes"], b["database_codes"])
    record_a = json.loads((run_folder(reference) / "result.json").read_text())
    record_b = json.loads((run_folder(interrupted) / "result.json").read_text())
    assert record_a["metrics"] == record_b["metrics"]
    assert [e["loss"] for e in record_a["history"]] == [e["loss"] for e in record_b["history"]]


def test_checkpoint_from_another_config_is_refused(cli, tmp_path):
    """A run never resumes from a checkpoint that another config wrote (that a run resumes from
    its own, to the same codes, is the test above); the checkpoint stays as it was."""
    (other,) = planned("csq", epochs=3)
    checkpoint = other.folder(tmp_path) / "checkpoint.pt"
    state = {"fingerprint": other.fingerprint(), "epoch": 1}
    save_checkpoint(checkpoint, state)  # as an interrupted run of the other config leaves it
    result = cli("run", *ARGS, "--lr", "0.01", "--results", tmp_path)
    assert result.exit_code != 0
    assert f"{checkpoint} was written under another config (fingerprint {other.fingerprint()} != " in result.output
    record = json.loads((run_folder(tmp_path) / "result.json").read_text())
    assert record["status"] == "failed" and "refusing to resume" in record["reason"]
    assert read_checkpoint(checkpoint) == state  # kept, not overwritten


def test_same_command_twice_gives_identical_codes(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("run", "--methods", "csq", "--bits", "16", "--epochs", "2", "--no-progress",
                   "--results", tmp_path / name).exit_code == 0
    np.testing.assert_array_equal(load_codes(run_folder(tmp_path / "a"))["database_codes"],
                                  load_codes(run_folder(tmp_path / "b"))["database_codes"])
