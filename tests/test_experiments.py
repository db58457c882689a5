"""Experiments as files: ``run --config``, ``config show``, ``report --config`` and TensorBoard tracking."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, fake_run

from hashbench.analysis.tables import markdown_text
from hashbench.config import RunConfig
from hashbench.validation import HashbenchError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def show(cli, *args) -> list[dict]:
    result = cli("config", "show", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def record(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


GRID = """\
methods = ["csq", "dpsh"]
bits = [16]
epochs = 2
results = "{results}"
lr = 0.002

[method.csq]
center_weight = 2.0

[report]
figures = false
out = "{out}"
"""


def test_a_config_file_and_the_same_flags_give_identical_runs(cli, tmp_path, monkeypatch):
    """The file's runs are the flags' runs: the same folders (the file's results), configs and
    fingerprints, so the same records (the same config gives the same codes: test_resume).
    ``report --config`` takes the file's [report] table and names the file on every page."""
    monkeypatch.chdir(tmp_path)  # [report] out is inside the working directory
    config = write(tmp_path / "grid.toml", GRID.format(results=tmp_path / "results", out="report"))
    by_file = show(cli, "--config", config)
    by_flags = show(cli, "--methods", "csq,dpsh", "--bits", "16", "--epochs", "2", "--set", "lr=0.002",
                    "--set", "center_weight=2", "--results", tmp_path / "results")
    assert [run["config"]["method"] for run in by_file] == ["csq", "dpsh"]
    for a, b in zip(by_file, by_flags, strict=True):
        assert (a["folder"], a["fingerprint"], a["config"]) == (b["folder"], b["fingerprint"], b["config"])
        assert a["folder"].startswith(str(tmp_path / "results" / "digits"))
        assert a["config"]["epochs"] == 2 and a["config"]["lr"] == 0.002 and not a["config"]["tensorboard"]
    assert by_file[0]["config"]["hparams"]["center_weight"] == 2.0

    for method in ("csq", "dpsh"):
        fake_run(tmp_path / "results", method, 16, 0, quality=0.1, dataset="digits")
    report = cli("report", "--config", config)  # [report]: out, no figures; results: the top level's
    assert report.exit_code == 0, report.output
    assert not (tmp_path / "report" / "figures").exists()
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    named = markdown_text(f"{config} (sha256 {digest})")  # outside a git work tree the path is the one given
    assert named in (tmp_path / "report" / "README.md").read_text()
    assert f"- config: {named}" in (tmp_path / "report" / "map.md").read_text()
    assert f"% config: {named}" in (tmp_path / "report" / "map.tex").read_text()


def test_precedence_and_provenance(cli, tmp_path):
    """file top level < a [[grid]]'s keys < file [method.X]; the command line over all."""
    config = write(tmp_path / "x.toml", """\
methods = ["orthohash"]
datasets = ["cifar10"]
bits = [16, 32]
frozen_backbone = true
epochs = 7
batch_size = 64
weight_decay = 0.01

[method.orthohash]
margin = 0.4
epochs = 9

[[grid]]
name = "a"
batch_size = 32
bits = [16]
weight_decay = 0.02
""")
    runs = show(cli, "--config", config, "--set", "lr=0.02", "--results", tmp_path / "r")
    assert len(runs) == 1  # the grid's bits replace the top level's
    values, sources = runs[0]["config"], runs[0]["sources"]
    expected = {
        "lr": (0.02, "command line"),  # over the frozen recipe's 1e-3
        "epochs": (9, "file [method.orthohash]"),  # over the file's option and the frozen recipe's 4
        "hparams.margin": (0.4, "file [method.orthohash]"),  # over the recipe for cifar10*
        "batch_size": (32, "file [grid a]"),
        "weight_decay": (0.02, "file [grid a]"),
        "lr_step": (24, "frozen recipe"),
        "augment": ("flip_jitter", "method recipe for cifar10*"),
        "optimizer": ("adam", "method recipe"),
        "backbone": ("mobilenet_v2", "dataset"),
        "momentum": (0.9, "runner default"),
        "hparams.scale": (8.0, "method default"),
        "frozen_backbone": (True, "file"),
    }
    for key, (value, source) in expected.items():
        stored = values["hparams"][key.removeprefix("hparams.")] if key.startswith("hparams.") else values[key]
        assert (stored, sources[key]) == (value, source), key
    cli_wins = show(cli, "--config", config, "--epochs", "3", "--bits", "64", "--results", tmp_path / "r")
    assert [(r["config"]["epochs"], r["config"]["bits"], r["sources"]["epochs"]) for r in cli_wins] == [
        (3, 64, "command line")]
    text = cli("config", "show", "--config", config, "--results", tmp_path / "r").output
    assert text.startswith(f"# {config} (sha256 ") and "# [1/1] grid a: orthohash on cifar10, 16 bits, seed 0" in text
    assert "margin" in text and "# file [method.orthohash]" in text
    assert not (tmp_path / "r").exists()  # config show loads, trains and writes nothing


def test_config_show_without_a_file_shows_the_flags_runs(cli, tmp_path):
    runs = show(cli, "--methods", "csq,dpsh", "--bits", "16,32", "--set", "tag=t", "--results", tmp_path / "r")
    assert [(r["config"]["method"], r["config"]["bits"]) for r in runs] == [("csq", 16), ("csq", 32), ("dpsh", 16),
                                                                           ("dpsh", 32)]
    assert runs[0]["folder"] == str(tmp_path / "r" / "digits" / "csq+t" / "16" / "seed0")
    assert runs[0]["fingerprint"] == RunConfig(**runs[0]["config"]).fingerprint()
    assert runs[0]["sources"]["tag"] == "command line" and runs[0]["sources"]["backbone"] == "dataset"
    assert not (tmp_path / "r").exists()


def test_every_config_key_is_type_checked_whoever_sets_it(cli, tmp_path):
    with pytest.raises(HashbenchError, match=r"^image_size must be an integer >= 8 and <= 1024 or none; got '64'$"):
        RunConfig(method="csq", dataset="digits", bits=16, image_size="64").validate()
    assert RunConfig(method="csq", dataset="digits", bits=16, image_size=64.0).validate().image_size == 64
    result = cli("config", "show", "--methods", "csq", "--set", "epochs=none", "--results", tmp_path / "r")
    assert result.exit_code != 0 and result.output.strip().endswith("epochs must be an integer >= 1 and <= 100000; "
                                                                    "got None")
    assert len(show(cli, "--methods", "csq", "--bits", "16,32", "--seeds", "0,1", "--results", tmp_path / "r")) == 4


@pytest.mark.parametrize(("datasets", "message"), [
    ("cifar10=listfile:/x", "dataset name 'cifar10' (of cifar10=listfile:/x) is a registered dataset's"),
    ("my/set=listfile:/x", "dataset name 'my/set' (of my/set=listfile:/x) must be letters, digits"),
    ("mine=cifar10", "only folder datasets take a name (NAME=listfile:DIR or NAME=imagefolder:DIR); got mine=cifar10"),
    ("a=listfile:/x,a=listfile:/y", "datasets a=listfile:/x and a=listfile:/y are both shown as a"),
])
def test_bad_dataset_names_are_one_line_errors(cli, tmp_path, datasets, message):
    result = cli("config", "show", "--methods", "csq", "--datasets", datasets, "--results", tmp_path / "r")
    assert result.exit_code != 0 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_a_dataset_name_sets_the_folder_and_keeps_the_spec_and_recipes(cli, tmp_path):
    """NAME=listfile:DIR is stored under NAME; the config (and its fingerprint) keeps the whole spec;
    a method's settings for a dataset follow what the data is, not its name."""
    named, unnamed = (show(cli, "--methods", "dbdh", "--bits", "16", "--datasets", dataset, "--results",
                           tmp_path / "r")[0] for dataset in ("cifar10-x=listfile:/data/x", "listfile:/data/x"))
    assert named["folder"] == str(tmp_path / "r" / "cifar10-x" / "dbdh" / "16" / "seed0")
    assert named["config"]["dataset"] == "cifar10-x=listfile:/data/x" and named["fingerprint"] != unnamed["fingerprint"]
    # dbdh's cifar10* recipe (augment none) is for CIFAR-10, not for a list folder named so
    assert named["config"]["augment"] == unnamed["config"]["augment"] == "random_crop_flip"
    assert {k: v for k, v in named["config"].items() if k != "dataset"} == {
        k: v for k, v in unnamed["config"].items() if k != "dataset"}
    assert RunConfig(method="csq", dataset="digits", bits=16).folder("r") == Path("r/digits/csq/16/seed0")


BAD = [
    ('methods = ["csq"]\nlamda_q = 1\n', "x.toml: unknown key 'lamda_q' at the top level"),
    ('methods = ["csq"]\nepoch = 3\n', "x.toml: unknown key 'epoch' at the top level; did you mean epochs?"),
    ('methods = ["csq"]\n[set]\nimage_size = 32\n', "x.toml: [set] is gone: its keys go at the top level"),
    ('methods = ["csq"]\n[method.csq]\nalpha = 1\n', "x.toml: [method.csq] unknown key 'alpha' for csq"),
    ('methods = ["csq"]\n[method.csqq]\nhead = "mlp"\n', "x.toml: [method.csqq] unknown method 'csqq'"),
    ('methods = ["csq"]\nepochs = "ten"\n', "x.toml: epochs must be an integer >= 1 and <= 100000; got 'ten'"),
    ('methods = ["csq"]\nimage_size = "64"\n', "x.toml: image_size must be an integer >= 8 and <= 1024 or none; "
                                                "got '64'"),
    ('methods = ["csq"]\nlr = [1]\n', "x.toml: lr must be a finite number > 0; got [1]"),
    ('methods = ["csq"]\nlr = -1\n', "x.toml: lr must be a finite number > 0"),
    ('methods = ["csq"]\naugment = "rotate"\n', "x.toml: augment must be one of"),
    ('methods = ["csq"]\n[method.csq]\ntopk = "5"\n',
     "x.toml: [method.csq] topk must be an integer >= 1 or none; got '5'"),
    ('methods = ["csq"]\nbackbone = 5\n', "x.toml: backbone must be a string; got 5"),
    ('methods = ["csq"]\nfrozen_backbone = "none"\n', "x.toml: frozen_backbone must be true or false; got None"),
    ('methods = ["csq"]\nbits = ["16"]\n', "x.toml: bits must be an integer >= 8 and <= 1024; got '16'"),
    ('methods = ["mlh"]\n[method.mlh]\nlambda_center = -1\n',
     "x.toml: [method.mlh] lambda_center must be a finite number >= 0; got -1"),
    ('methods = ["hashnet"]\nalpha = "abc"\n', "x.toml: hashnet: alpha must be a finite number > 0"),
    ('methods = ["csq"]\nalpha = 1\n', "x.toml: unknown config key 'alpha' for method csq"),
    ('methods = ["csq"]\n[[grid]]\nname = "a"\nepochs = 0\n',
     "x.toml: [grid a] epochs must be an integer >= 1 and <= 100000; got 0"),
    ('methods = ["csq"]\n[[grid]]\nname = "a"\nresults = "r"\n', "x.toml: [grid a] results says where every grid"),
    ('methods = ["csq"]\nbits = [7]\n', "x.toml: bits must be an integer >= 8 and <= 1024; got 7"),
    ('methods = ["csqq"]\n', "x.toml: methods: unknown method 'csqq'; did you mean csq?"),
    ('methods = ["csq"]\ndatasets = "cifar11"\n', "x.toml: datasets: unknown dataset 'cifar11'"),
    ('methods = ["csq"]\nseed = 1\n', "x.toml: seed is a grid key: write seeds = [...]"),
    ('methods = ["csq"]\n[method.csq]\nbits = 32\n', "x.toml: [method.csq] bits is a grid key"),
    ('methods = ["csq"]\nforce = true\n', "x.toml: force is a command-line flag only"),
    ('methods = ["csq"\n', "x.toml: not valid TOML"),
    ('methods = ["csq"]\n[report]\nties = "random"\n', "x.toml: [report] ties must be one of expected, index"),
    ('methods = ["csq"]\n[report]\nouts = "r"\n', "x.toml: [report] unknown key 'outs'; did you mean out"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ", 1)[1][:40] for _, m in BAD])
def test_errors_in_a_file_are_one_line_naming_file_and_key(cli, tmp_path, text, message):
    config = write(tmp_path / "x.toml", text)
    for command in (["run", "--no-progress"], ["config", "show"]):
        result = cli(*command, "--config", config, "--results", tmp_path / "r")
        assert result.exit_code != 0
        assert message in result.output.replace(str(tmp_path) + "/", ""), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_grid_selection(cli, tmp_path):
    config = write(tmp_path / "x.toml", """\
methods = ["csq"]
bits = [16]

[[grid]]
name = "a"

[[grid]]
name = "b"
methods = ["dpsh"]
seeds = [0, 1]

[[grid]]
name = "b"
methods = ["mlh"]
""")
    everything = show(cli, "--config", config)
    assert [(r["grid"], r["config"]["method"], r["config"]["seed"]) for r in everything] == [
        ("a", "csq", 0), ("b", "dpsh", 0), ("b", "dpsh", 1), ("b", "mlh", 0)]
    assert [r["config"]["method"] for r in show(cli, "--config", config, "--grid", "b")] == ["dpsh", "dpsh", "mlh"]
    unknown = cli("config", "show", "--config", config, "--grid", "c")
    assert unknown.exit_code != 0 and "x.toml: no [[grid]] named 'c'" in unknown.output
    alone = cli("config", "show", "--grid", "a", "--methods", "csq")
    assert alone.exit_code != 0 and "--grid chooses among the [[grid]] tables" in alone.output
    clash = write(tmp_path / "clash.toml", 'methods = ["csq"]\n[[grid]]\nname = "a"\n[[grid]]\nname = "b"\n'
                                           'epochs = 3\n')
    result = cli("config", "show", "--config", clash)
    assert result.exit_code != 0 and "grids a and b both write" in result.output
    missing = cli("run", "--no-progress")
    assert missing.exit_code != 0 and "give --methods (or --config FILE with methods = [...])" in missing.output


#: benchmarks/cifar10_frozen.sh's grid stages as flags, before they moved into experiments/cifar10-frozen.toml.
COMMON = ["--data-root", "../shared/data", "--frozen-backbone", "--set", "image_size=128", "--bits", "16,32,64",
          "--seeds", "0,1,2", "--results", "results/cifar10-frozen", "--no-progress"]
SAME_HEAD = ["--datasets", "cifar10", "--set", "head=linear", "--set", "tag=equal-head-linear", *COMMON]
STAGES = {
    "main": [["--methods", "dpsh,hashnet,csq,orthohash,mlh", "--datasets", "cifar10,cifar10-1", *COMMON]],
    "breadth": [["--methods", "ce,dsh,dhn,dch,dsdh,greedyhash,dfh,dpn,idhn,adsh,dbdh,jmlh,orthoarc",
                 "--datasets", "cifar10,cifar10-1", *COMMON]],
    "breadth-dtsh": [["--methods", "dtsh", "--datasets", "cifar10,cifar10-1", *COMMON]],
    "label-free": [["--methods", "lsh,pcah,itq,sh,sdh,bihalf,greedyhash-u", "--datasets", "cifar10,cifar10-1",
                    *COMMON]],
    "equal-head": [["--methods", "hashnet,csq,orthohash,mlh", *SAME_HEAD], ["--methods", "dpsh", *SAME_HEAD,
                                                                           "--seeds", "0"]],
    "ablation": [["--methods", "mlh-center,mlh-pairwise,mlh-no-moh,mlh-moe,mlh-moh-unshared", "--datasets", "cifar10",
                  *COMMON]],
}


@pytest.mark.parametrize("stage", STAGES)
def test_the_published_config_resolves_to_the_scripts_runs(cli, stage):
    from_file = show(cli, "--config", REPO / "experiments" / "cifar10-frozen.toml", "--grid", stage)
    from_flags = [run for flags in STAGES[stage] for run in show(cli, *flags)]
    assert len(from_file) == len(from_flags) > 0
    for a, b in zip(from_file, from_flags, strict=True):
        assert (a["folder"], a["fingerprint"]) == (b["folder"], b["fingerprint"])
        assert a["config"] == b["config"]


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_experiment_resolves(cli, path):
    runs = show(cli, "--config", path)
    assert runs and all(run["fingerprint"] for run in runs)


def test_tensorboard_is_runtime_only():
    base = RunConfig(method="csq", dataset="digits", bits=16)
    assert RunConfig(method="csq", dataset="digits", bits=16, tensorboard=True).fingerprint() == base.fingerprint()


def test_tensorboard_without_the_package_is_one_line_before_any_run(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now fails
    result = cli("run", "--methods", "csq", "--bits", "16", "--set", "tensorboard=true", "--results", tmp_path)
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "tensorboard=true needs the tensorboard package: pip install 'hashbench[tensorboard]'" in result.output
    assert not (tmp_path / "digits").exists()


def test_tensorboard_curves_are_written_and_readable(cli, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                      reason="tensorboard is not installed (pip install 'hashbench[tensorboard]')")
    result = cli("run", "--methods", "csq", "--bits", "16", "--epochs", "2", "--set", "tensorboard=true",
                 "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "digits" / "csq" / "16" / "seed0"
    events = accumulator.EventAccumulator(str(folder / "tb"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    done = record(folder)
    history = done["history"]
    terms = [k for k in history[0] if k not in ("epoch", "seconds", "lr")]
    assert "loss" in terms and len(terms) > 1  # the total and every named term
    steps = len(events.Scalars("loss/loss"))
    assert steps == 2 * (1597 // 64)  # every optimizer step of the two epochs (the last short batch dropped)
    for term in terms:
        values = [s.value for s in events.Scalars(f"loss/{term}")]
        assert len(values) == steps
        per_epoch = [np.mean(values[:steps // 2]), np.mean(values[steps // 2:])]
        np.testing.assert_allclose(per_epoch, [h[term] for h in history], rtol=1e-5)  # the record's means
        assert [s.step for s in events.Scalars(f"epoch/{term}")] == [1, 2]
    assert [s.value for s in events.Scalars("epoch/lr")] == pytest.approx([1e-3, 1e-3])
    assert all(s.value > 0 for s in events.Scalars("epoch/images_per_s"))
    final = {tag.removeprefix("metrics/"): events.Scalars(tag)[-1].value for tag in scalars
             if tag.startswith("metrics/")}
    assert final["map@1597"] == pytest.approx(done["metrics"]["map@1597"])
    assert final["map_expected@1597"] == pytest.approx(done["metrics"]["map_expected@1597"])
    assert done["config"]["tensorboard"] is True  # a --force rerun archives tb/ with the record: test_cli


@pytest.mark.parametrize(("table", "key"), [
    ('out = "../elsewhere"', "out"),
    ('out = "{outside}"', "out"),
    ('out = "escape/r"', "out"),  # escape -> .. through a symbolic link
    ('notes = "../secret.md"', "notes"),
])
def test_report_paths_in_a_file_stay_inside_the_working_directory(cli, tmp_path, monkeypatch, table, key):
    work = tmp_path / "work"
    work.mkdir()
    (work / "escape").symlink_to(tmp_path)
    (tmp_path / "secret.md").write_text("not for the page")
    monkeypatch.chdir(work)
    config = write(work / "x.toml", f"methods = [\"csq\"]\n\n[report]\n{table.format(outside=tmp_path / 'r')}\n")
    result = cli("report", "--config", config)
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert f"{config}: [report] {key} " in result.output
    assert f"leads outside the working directory {work.resolve()}; give it on the command line as --{key}" in \
        result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "elsewhere").exists()
