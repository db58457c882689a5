"""The command line end to end on the embedded digits dataset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import planned, record_done

from hashbench.cli import main
from hashbench.engine.distributed import World
from hashbench.engine.preflight import preflight
from hashbench.registry import METHODS
from hashbench.results import CODES, MODEL, RECORD, TB_DIR, archive_previous, load_codes, write_record

CHANCE = 0.1  # ten balanced classes


@pytest.mark.slow
def test_run_skip_and_report(cli, tmp_path):
    results = tmp_path / "results"
    out = cli("run", "--methods", "csq", "--bits", "16,32", "--epochs", "3", "--results", results, "--no-progress")
    assert out.exit_code == 0, out.output
    for bits in (16, 32):
        folder = results / "digits" / "csq" / str(bits) / "seed0"
        record = json.loads((folder / "result.json").read_text())
        assert record["status"] == "done"
        assert record["protocol"]["sizes"] == {"train": 1597, "query": 200, "database": 1597}
        assert record["config"]["epochs"] == 3 and record["config"]["hparams"]["quantization_weight"] is None
        metrics = record["metrics"]
        assert metrics["topk"] == 1597 and set(metrics) >= {"map@1597", "map_expected@1597"}
        assert 5 * CHANCE < metrics["map_expected@1597"] <= 1 and 5 * CHANCE < metrics["map@1597"] <= 1
        assert set(record["timing"]) >= {"train_s", "encode_s", "eval_s", "train_images_per_s"}
        assert record["versions"]["torch"]
        codes = load_codes(folder)
        assert codes["query_codes"].shape == (200, bits) and codes["database_codes"].shape == (1597, bits)
        assert not (folder / "checkpoint.pt").exists() and not (folder / "tb").exists()  # no tracking unless asked
    again = cli("run", "--methods", "csq", "--bits", "16", "--epochs", "3", "--results", results, "--no-progress")
    assert again.exit_code == 0 and "skipped" in again.output

    # benchmarks/check_records.py --metrics: the saved codes reproduce the record's metrics exactly
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_records.py"
    spec = importlib.util.spec_from_file_location("check_records", script)
    check_records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_records)
    record = json.loads((folder / "result.json").read_text())
    assert check_records.metrics_differ(folder, record) == []
    record["metrics"]["map@1597"] += 1e-12
    wrong = check_records.metrics_differ(folder, record)
    assert len(wrong) == 1 and wrong[0].startswith("map@1597: ")

    report = cli("report", "--results", results, "--out", tmp_path / "report", "--no-figures")  # tested in test_report
    assert report.exit_code == 0, report.output
    table = (tmp_path / "report" / "map.md").read_text()
    assert "| csq |" in table and "digits 16 bits" in table
    frame = pd.read_csv(tmp_path / "report" / "map.csv")
    assert list(frame.columns) == ["method", "dataset", "bits", "seed", "metric", "value"]
    runs = frame[frame.method == "csq"]
    assert len(runs[runs.metric == "map@1597"]) == 2 and len(runs[runs.metric == "map_expected@1597"]) == 2
    assert len(frame[frame.method == "random-codes"]) == 2  # the floor of each column


def test_progress_off_a_terminal_is_a_few_plain_lines(cli, tmp_path):
    out = cli("run", "--methods", "dpsh", "--bits", "16", "--epochs", "3", "--results", tmp_path)
    assert out.exit_code == 0, out.output
    assert "\r" not in out.output
    assert out.output.startswith("digits: backbone small_cnn (random init), 16 px, fine-tuned, augment none")
    lines = out.output.splitlines()
    assert any("encode queries" in line for line in lines) and any("encode database" in line for line in lines)
    assert len(lines) < 12, out.output


def test_force_archives_the_old_record_with_its_codes_model_and_curves(tmp_path):
    """What ``run --force`` (and a rerun over a damaged record) moves aside before the run
    trains again; that it does so is in test_integrity (edited lists, a damaged record)."""
    folder = tmp_path / "digits" / "csq" / "16" / "seed0"
    write_record(folder, {"method": "csq", "dataset": "digits", "bits": 16, "seed": 0, "status": "done",
                          "timing": {"finished_at": "2024-05-06T07:08:09+00:00"}})
    for name in (CODES, MODEL):
        (folder / name).write_text(f"the old run's {name}")
    (folder / TB_DIR).mkdir()
    (folder / TB_DIR / "events").write_text("the old run's curves")
    archive_previous(folder)
    (archived,) = (folder / "history").iterdir()
    assert archived.name.startswith("2024-05-06")  # named by the time the old run finished
    assert sorted(p.name for p in archived.iterdir()) == sorted([RECORD, CODES, MODEL, TB_DIR])
    assert (archived / MODEL).read_text() == f"the old run's {MODEL}"  # the old model goes with its record
    assert (archived / TB_DIR / "events").read_text() == "the old run's curves"
    assert [p.name for p in folder.iterdir()] == ["history"]


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", "csqq"], "unknown method 'csqq'; did you mean csq?"),
    (["--methods", "csq", "--bits", "7"], "--bits must be an integer >= 8 and <= 1024; got 7"),
    (["--methods", "csq", "--bits", "sixteen"], "--bits must be an integer >= 8 and <= 1024; got 'sixteen'"),
    (["--methods", ","], "--methods must name at least one item"),
    (["--methods", "csq", "--datasets", "cifar11"], "unknown dataset 'cifar11'"),
    (["--methods", "csq", "--datasets", "nuswide"], "or a folder as listfile:DIR"),
    (["--methods", "csq", "--backbone", "resnet5"], "unknown backbone 'resnet5'"),
    (["--methods", "csq", "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["--methods", "csq", "--set", "lamda_q=0.1"], "csq hyperparameters: center_seed, center_weight, head"),
    (["--methods", "csq", "--set", "quantization_wieght=0.1"], "did you mean quantization_weight?"),
    (["--methods", "csq", "--set", "bits=32"], "bits is a grid option: use --bits"),
    (["--methods", "csq", "--set", "lr=-1"], "lr must be a finite number > 0; got -1"),
    (["--methods", "csq", "--set", "skip_corrupt=no"], "skip_corrupt must be true or false; got 'no'"),
    (["--methods", "mlh,csq", "--set", "recipe=vgg"], "csq: recipe must be one of resnet, alexnet; got 'vgg'"),
    (["--methods", "mlh,csq", "--set", "mutual=foo"], "mlh: mutual must be one of detached, joint; got 'foo'"),
    (["--methods", "hashnet", "--set", "alpha=abc"], "hashnet: alpha must be a finite number > 0 or none; got 'abc'"),
    (["--methods", "mlh", "--set", "lambda_center=-1"], "mlh: lambda_center must be a finite number >= 0; got -1"),
    (["--methods", "csq", "--set", "augment=rotate"], "augment must be one of none, flip"),
    (["--methods", "csq", "--set", "tag=a/b"], "tag must be letters"),
    (["--methods", "csq", "--datasets", "cifar10", "--data-root", "/nonexistent"], "CIFAR-10 not found"),
])
def test_bad_input_is_one_line_and_nonzero(cli, tmp_path, args, message):
    result = cli("run", *args, "--epochs", "1", "--results", tmp_path, "--no-progress")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_record_made_with_another_config_is_never_reused(cli, tmp_path):
    """Checked before anything trains: the same config skips its finished run, another one is
    refused naming what changed, and a tag makes it a run of its own in another folder."""
    (config,) = planned("csq", epochs=1)
    record_done(config, tmp_path)
    base = ["run", "--methods", "csq", "--bits", "16", "--epochs", "1", "--results", tmp_path, "--no-progress"]
    assert "skipped, record exists" in cli(*base).output
    other = cli(*base, "--set", "center_weight=2")
    assert other.exit_code != 0 and "another config (hparams.center_weight 1.0 -> 2.0" in other.output
    (tagged,) = planned("csq", epochs=1, center_weight=2.0, tag="heavy")
    assert tagged.folder(tmp_path) == tmp_path / "digits" / "csq+heavy" / "16" / "seed0"
    preflight([tagged], tmp_path, force=False, ranks=World(), warn=pytest.fail)  # not refused


def test_an_unexpected_error_in_one_run_is_recorded_and_the_grid_goes_on(cli, tmp_path, monkeypatch):
    from hashbench.methods.csq import CSQ

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(CSQ, "loss", broken)
    out = CliRunner().invoke(main, ["run", "--methods", "csq,dpsh", "--bits", "16", "--epochs", "1",
                                    "--results", str(tmp_path), "--no-progress"])
    assert out.exit_code == 1
    failed = json.loads((tmp_path / "digits" / "csq" / "16" / "seed0" / "result.json").read_text())
    assert failed["status"] == "failed" and failed["reason"] == "RuntimeError: boom"
    assert "Traceback" in (tmp_path / "digits" / "csq" / "16" / "seed0" / "log.txt").read_text()
    done = json.loads((tmp_path / "digits" / "dpsh" / "16" / "seed0" / "result.json").read_text())
    assert done["status"] == "done"
    assert "1 of 2 runs failed" in out.output


def test_code_lengths_that_are_not_multiples_of_8_work(cli, tmp_path):
    out = cli("run", "--methods", "csq", "--bits", "12", "--epochs", "1", "--results", tmp_path, "--no-progress")
    assert out.exit_code == 0, out.output
    folder = tmp_path / "digits" / "csq" / "12" / "seed0"
    codes = load_codes(folder)
    assert codes["query_codes"].shape == (200, 12) and codes["database_codes"].shape == (1597, 12)
    from hashbench.eval import mean_average_precision

    record = json.loads((folder / "result.json").read_text())
    recomputed = mean_average_precision(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                                        codes["database_labels"], topk=1597)
    assert record["metrics"]["map@1597"] == pytest.approx(recomputed)


def test_list(cli):
    out = cli("list", "methods")
    assert out.exit_code == 0
    lines = {line.split()[0]: line for line in out.output.splitlines()}
    assert set(lines) == set(METHODS.names())  # every registered method, the fourteen breadth ones included
    assert lines["csq"].endswith("[center]") and lines["itq"].endswith("[shallow, label-free, closed form]")
    assert lines["bihalf"].endswith("[unsupervised, label-free]")
    names = list(lines)
    order = [names.index(m) for m in ("dpsh", "csq", "mlh", "itq", "bihalf")]
    assert order == sorted(order)  # grouped by family
    datasets = cli("list", "datasets").output
    assert "digits" in datasets and "listfile:DIR" in datasets and "imagefolder:DIR" in datasets
    assert "default model: backbone mobilenet_v2 (IMAGENET1K_V1), image size the weights' own" in datasets
    assert "default model: backbone small_cnn (random init), image size 16" in datasets
    assert "mobilenet_v2" in cli("list", "backbones").output


def test_report_without_records_fails_clearly(cli, tmp_path):
    result = cli("report", "--results", tmp_path, "--out", tmp_path / "out")
    assert result.exit_code != 0 and "no run records" in result.output
