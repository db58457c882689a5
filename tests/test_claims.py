"""Concurrent writers: two processes on overlapping grids never train the same run twice,
and a claim left by a dead process is recovered."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env

from hashbench.engine import claims
from hashbench.engine.claims import Claim
from hashbench.results import run_dir


def hashbench(*args):
    return subprocess.Popen([sys.executable, "-m", "hashbench.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=subprocess_env())


@pytest.mark.slow
def test_overlapping_grids_train_each_run_once(cli, tmp_path):
    """Another process trains 32, 16, 64 bits; once it holds its first claim, this one runs
    the same grid (only one interpreter to start: this one is already warm)."""
    common = ["--methods", "csq", "--epochs", "2", "--results", tmp_path, "--no-progress"]
    other = hashbench("run", "--bits", "32,16,64", *common)
    first_claim = run_dir(tmp_path, "digits", "csq", 32, 0) / "claim.json"
    deadline = time.monotonic() + 300
    while not first_claim.exists() and other.poll() is None:
        assert time.monotonic() < deadline, "the other process claimed nothing within 300 s"
        time.sleep(0.01)
    ours = cli("run", "--bits", "32,16,64", *common)
    theirs = other.communicate(timeout=600)[0]
    assert ours.exit_code == 0 and other.returncode == 0, (ours.output, theirs)
    for bits in (16, 32, 64):
        folder = run_dir(tmp_path, "digits", "csq", bits, 0)
        assert json.loads((folder / "result.json").read_text())["status"] == "done"
        assert (folder / "log.txt").read_text().count(" config {") == 1  # trained by exactly one process
        assert not (folder / "claim.json").exists()
    assert "claimed by another process" in ours.output + theirs or "record exists" in ours.output


def write_claim(folder, pid, age_s=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / "claim.json"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": time.time() - age_s}))
    os.utime(claim, (time.time() - age_s, time.time() - age_s))


def test_stale_claim_of_a_dead_process_is_recovered(cli, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"], env=subprocess_env())
    dead.wait()
    folder = run_dir(tmp_path, "digits", "csq", 16, 0)
    write_claim(folder, dead.pid)
    result = cli("run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "recovered a stale claim" in (folder / "log.txt").read_text()
    assert json.loads((folder / "result.json").read_text())["status"] == "done"


def test_live_claim_is_respected(cli, tmp_path):
    folder = run_dir(tmp_path, "digits", "csq", 16, 0)
    write_claim(folder, os.getpid())
    result = cli("run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0 and "claimed by another process" in result.output
    assert not (folder / "result.json").exists()
    write_claim(folder, os.getpid(), age_s=3600)  # a heartbeat an hour old: the owner is gone
    assert cli("run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--results", tmp_path,
               "--no-progress").exit_code == 0
    assert (folder / "result.json").exists()


def take_over_stale_claim(folder: str, contender: int, start, everyone_decided, results) -> None:
    """One contender (in its own process): try to claim ``folder`` and report the outcome."""
    check = claims._is_stale

    def slow_check(path):
        stale = check(path)
        # A slow file system: a window between checking and replacing a claim, one that ends
        # later for each contender, so that without a lock each replaces the previous one's claim.
        time.sleep(0.2 * (contender + 1))
        return stale

    claims._is_stale = slow_check
    start.wait(timeout=120)
    with Claim(Path(folder)) as claim:
        results.put((claim.acquired, claim.recovered))
        everyone_decided.wait(timeout=120)  # hold the claim until every contender has tried


def test_concurrent_takeovers_of_a_stale_claim_leave_one_owner(tmp_path, single_threaded_children):
    contenders = 3
    write_claim(tmp_path, os.getpid(), age_s=3600)
    # fork: a spawned child would first import torch (seconds each); these children only lock files
    context = multiprocessing.get_context("fork")
    start, everyone_decided, results = context.Barrier(contenders), context.Barrier(contenders), context.Queue()
    processes = [context.Process(target=take_over_stale_claim,
                                 args=(str(tmp_path), i, start, everyone_decided, results)) for i in range(contenders)]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * contenders
    assert sorted(outcomes) == [(False, False)] * (contenders - 1) + [(True, True)]
    assert not (tmp_path / "claim.json").exists()  # released by its one owner


def test_claim_that_cannot_be_inspected_is_respected(tmp_path, monkeypatch):
    write_claim(tmp_path, os.getpid())
    real_stat = Path.stat

    def failing_stat(path, *args, **kwargs):
        if path.name == "claim.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", failing_stat)
    with Claim(tmp_path) as claim:
        assert not claim.acquired and not claim.recovered
