"""Concurrent writers: two processes on overlapping grids never train the same run twice,
and a claim left by a dead process is recovered."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from hashbench.results import run_dir


def hashbench(*args):
    return subprocess.Popen([sys.executable, "-m", "hashbench.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_overlapping_grids_train_each_run_once(tmp_path):
    common = ["--methods", "csq", "--epochs", "12", "--results", tmp_path, "--no-progress"]
    first = hashbench("run", "--bits", "16,32", *common)
    second = hashbench("run", "--bits", "32,16,64", *common)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    for bits in (16, 32, 64):
        folder = run_dir(tmp_path, "digits", "csq", bits, 0)
        assert json.loads((folder / "result.json").read_text())["status"] == "done"
        assert (folder / "log.txt").read_text().count(" config {") == 1  # trained by exactly one process
        assert not (folder / "claim.json").exists()
    assert "claimed by another process" in "".join(outputs) or "record exists" in "".join(outputs)


def write_claim(folder, pid, age_s=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / "claim.json"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": time.time() - age_s}))
    os.utime(claim, (time.time() - age_s, time.time() - age_s))


def test_stale_claim_of_a_dead_process_is_recovered(cli, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
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
