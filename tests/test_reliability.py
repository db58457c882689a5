"""Bad input and failures: one clear line, a non-zero exit, and nothing finished is lost."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import write_list_dataset

from hashbench.engine.checkpoint import read_checkpoint
from hashbench.methods.csq import CSQ
from hashbench.registry import METHODS
from hashbench.storage import atomic_write


class NaNAfterOneEpoch(CSQ):
    """CSQ whose loss turns NaN at step 30 (digits has 24 steps per epoch)."""

    name = "nan-after-one-epoch"

    def loss(self, output, *, labels, index, step):
        terms = super().loss(output, labels=labels, index=index, step=step)
        if step >= 30:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


@pytest.fixture
def nan_method():
    METHODS.register(NaNAfterOneEpoch.name, NaNAfterOneEpoch)
    yield NaNAfterOneEpoch.name
    del METHODS._entries[NaNAfterOneEpoch.name]


def test_nan_loss_fails_the_run_keeps_checkpoint_and_the_grid_goes_on(cli, tmp_path, nan_method):
    result = cli("run", "--methods", f"{nan_method},csq", "--bits", "16", "--epochs", "2", "--results", tmp_path,
                 "--no-progress")
    assert result.exit_code == 1
    assert "non-finite loss nan at step 30 (epoch 1)" in result.output
    assert "1 of 2 runs failed" in result.output
    failed = tmp_path / "digits" / nan_method / "16" / "seed0"
    record = json.loads((failed / "result.json").read_text())
    assert record["status"] == "failed" and "step 30" in record["reason"]
    assert read_checkpoint(failed / "checkpoint.pt")["epoch"] == 1  # the last good one
    assert json.loads((tmp_path / "digits/csq/16/seed0/result.json").read_text())["status"] == "done"


def test_corrupt_image_is_named_and_skip_corrupt_counts_it(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=True)
    args = ["run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--datasets", f"listfile:{data}",
            "--backbone", "small_cnn", "--set", "weights=none", "--batch-size", "8", "--set", "num_workers=1",
            "--no-progress"]
    failed = cli(*args, "--results", tmp_path / "r1")
    assert failed.exit_code == 1
    assert f"corrupt or truncated image: {data / 'img' / '45.jpg'}" in failed.output
    skipped = cli(*args, "--results", tmp_path / "r2", "--set", "skip_corrupt=true")
    assert skipped.exit_code == 0, skipped.output
    record = json.loads(next((tmp_path / "r2").glob("**/result.json")).read_text())
    assert record["protocol"]["sizes"]["database"] == 19 and "1 corrupt images skipped" in record["protocol"]["source"]


def test_weights_file_that_does_not_fit(cli, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    result = cli("run", "--methods", "csq", "--bits", "16", "--weights", bad, "--results", tmp_path, "--no-progress")
    assert result.exit_code != 0
    assert f"weights file {bad} does not fit backbone small_cnn" in result.output
    assert len(result.output.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    result = cli("run", "--methods", "csq", "--bits", "16", "--weights", garbage, "--results", tmp_path)
    assert result.exit_code != 0 and "cannot be read" in result.output
    assert not list(tmp_path.glob("**/result.json"))  # nothing ran, nothing was written


def test_malformed_list_file_through_the_cli(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=False)
    (data / "test.txt").write_text("img/30.jpg 1 0 0\nimg/31.jpg 1 0\n")
    result = cli("run", "--methods", "csq", "--datasets", f"listfile:{data}", "--results", tmp_path / "r")
    assert result.exit_code != 0
    assert f"{data / 'test.txt'}:2: 2 labels, but earlier lines have 3" in result.output


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "result.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write('{"new": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_a_list_set_without_labels_is_refused_before_any_run(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=False)
    (data / "test.txt").write_text("".join(f"img/{i}.jpg 0 0 0\n" for i in range(30, 40)))
    args = ["run", "--methods", "csq", "--bits", "16", "--datasets", f"listfile:{data}", "--results", tmp_path / "r"]
    result = cli(*args)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert f"{data / 'test.txt'}: none of the 10 query items has a label" in result.output
    (data / "test.txt").write_text("".join(f"img/{i}.jpg 1 0 0\n" for i in range(30, 40)))
    (data / "train.txt").write_text("".join(f"img/{i}.jpg 0 0 0\n" for i in range(30)))
    result = cli(*args)
    assert result.exit_code == 1 and "none of the 30 training items has a label" in result.output
    assert not (tmp_path / "r").exists()


def test_duplicates_and_overlap_are_warned_once_and_recorded(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=False)
    database = (data / "database.txt").read_text()
    (data / "database.txt").write_text(database + "img/30.jpg 1 0 0\nimg/45.jpg 1 0 0\nimg/45.jpg 1 0 0\n")
    result = cli("run", "--methods", "csq,dpsh", "--bits", "16", "--epochs", "1", "--datasets", f"listfile:{data}",
                 "--backbone", "small_cnn", "--set", "weights=none", "--batch-size", "8", "--set", "num_workers=0",
                 "--results", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    where = data / "database.txt"
    assert warnings == [
        f"warning: listfile:{data}: {data / 'test.txt'}:1: query {data / 'img/30.jpg'} is also in the database "
        f"({where}:21)",
        f"warning: listfile:{data}: {where}: 2 duplicate lines; first {where}:22: {data / 'img/45.jpg'} is listed "
        f"twice in database (first at {where}:6)"]
    for method in ("csq", "dpsh"):
        record = json.loads((tmp_path / "r").glob(f"**/{method}/16/seed0/result.json").__next__().read_text())
        assert record["protocol"]["warnings"] == [line.split(": ", 2)[2] for line in warnings]
