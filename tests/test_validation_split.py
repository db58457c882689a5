"""Validation runs: held-out training items as queries, and a per-epoch curve on them that
matches shorter runs, with the test queries never touched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashbench.config import RunConfig, config_fingerprint
from hashbench.data import load_dataset
from hashbench.results import run_dir
from hashbench.validation import HashbenchError


def test_holdout_draws_queries_from_training_items_only():
    data = load_dataset("digits")
    held = data.holdout(300)
    split, original = held.split, data.split
    assert len(split.query) == 300 and set(split.query) <= set(original.train)
    assert not set(split.query) & set(split.train) and not set(split.query) & set(split.database)
    assert not set(original.query) & (set(split.train) | set(split.query) | set(split.database))  # tests untouched
    assert len(split.train) == len(original.train) - 300
    np.testing.assert_array_equal(data.holdout(300).split.query, split.query)  # seeded by split_seed
    assert held.protocol()["validation"] == 300 and "validation" not in data.protocol()
    with pytest.raises(HashbenchError, match="validation must leave at least 2 of the 1597 training items"):
        data.holdout(1596)


def test_eval_every_needs_a_validation_split():
    with pytest.raises(HashbenchError, match="eval_every needs validation > 0"):
        RunConfig(method="csq", dataset="digits", bits=16, eval_every=2).validate()


def test_configs_without_validation_keep_their_fingerprint():
    """Records written before the key existed still match the config that made them."""
    config = RunConfig(method="csq", dataset="digits", bits=16).as_dict()
    older = {k: v for k, v in config.items() if k not in ("validation", "eval_every")}
    assert config_fingerprint(config) == config_fingerprint(older)
    assert config_fingerprint({**config, "validation": 100}) != config_fingerprint(older)


@pytest.mark.slow
def test_curve_point_equals_the_shorter_run(cli, tmp_path):
    common = ["run", "--methods", "csq", "--bits", "16", "--results", tmp_path, "--no-progress",
              "--set", "validation=300"]
    # The first run in a process differs from later ones in the last float bits (CPU kernel
    # selection), so the two runs compared here both come after another one.
    assert cli(*common, "--epochs", "1", "--set", "tag=warm-up").exit_code == 0
    assert cli(*common, "--epochs", "4", "--set", "eval_every=2", "--set", "tag=curve").exit_code == 0
    assert cli(*common, "--epochs", "2").exit_code == 0
    curve = json.loads((run_dir(tmp_path, "digits", "csq", 16, 0, "curve") / "result.json").read_text())
    short = json.loads((run_dir(tmp_path, "digits", "csq", 16, 0, "validation") / "result.json").read_text())
    assert [e.get("val_map") is not None for e in curve["history"]] == [False, True, False, True]
    assert curve["history"][1]["val_map"] == short["metrics"]["map_expected@1297"]
    assert curve["history"][3]["val_map"] == curve["metrics"]["map_expected@1297"]
    assert short["tag"] == "validation" and short["protocol"]["validation"] == 300
    assert short["protocol"]["sizes"] == {"train": 1297, "query": 300, "database": 1297}


def test_validation_mAP_is_named_so_and_a_frozen_run_records_no_augmentation(cli, tmp_path, monkeypatch):
    """The console line, the log and the report's table say "validation mAP (held-out training
    items)"; a frozen run records that its cached features were not augmented, while its config
    (and fingerprint) keeps the recipe's value."""
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    result = cli("run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--frozen-backbone", "--results",
                 tmp_path / "r", "--no-progress", "--set", "validation=300", "--set", "augment=crop_flip")
    assert result.exit_code == 0, result.output
    assert "frozen backbone (cached features, no augmentation)" in result.output
    assert "csq digits 16 bits seed 0: validation mAP@1297 (held-out training items) = " in result.output
    folder = run_dir(tmp_path / "r", "digits", "csq", 16, 0, "validation")
    assert "validation mAP@1297 (held-out training items) = " in (folder / "log.txt").read_text()
    record = json.loads((folder / "result.json").read_text())
    assert record["backbone"]["augment"] == "none (frozen features)" and record["config"]["augment"] == "crop_flip"
    assert record["fingerprint"] == RunConfig(**record["config"]).fingerprint()
    report = cli("report", "--results", tmp_path / "r", "--out", tmp_path / "report", "--no-figures")
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "map-validation.md").read_text().startswith(
        "# Validation mAP (held-out training items as queries, not the test queries), tag `validation`")
