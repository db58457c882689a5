"""Every registered method (built-in or plugin) trains through the CLI on digits, well above chance."""

from __future__ import annotations

import json

import pytest

from hashbench.registry import METHODS


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_on_digits_well_above_chance(cli, tmp_path, name):
    result = cli("run", "--methods", name, "--bits", "16", "--epochs", "8", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "digits" / name / "16" / "seed0" / "result.json").read_text())
    metrics = record["metrics"]
    assert metrics[f"map_expected@{metrics['topk']}"] > 0.7  # chance is about 0.1
