"""Integrity: a wrong result is never recorded done, every artifact is checked before use,
and one damaged file is named in one line while everything else goes on."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fake_run, invoke, planned, record_done, write_list_dataset

import hashbench.deploy.model as model_module
import hashbench.engine.checkpoint as checkpoint_module
import hashbench.engine.runner as runner_module
from hashbench import storage
from hashbench.data.datasets import load_dataset
from hashbench.engine.checkpoint import load_checkpoint, read_checkpoint
from hashbench.engine.launch import recorded_done
from hashbench.methods.csq import CSQ
from hashbench.methods.mlh import MLH
from hashbench.registry import METHODS
from hashbench.results import DamagedRecordError, iter_records, read_record, run_dir, write_record
from hashbench.storage import DiskFullError, atomic_write

RUN = ["--bits", "16", "--no-progress"]


def folder_of(root: Path, method: str, dataset: str = "digits") -> Path:
    return run_dir(root, dataset, method, 16, 0)


def one_line_error(result) -> str:
    """The single line a failed command printed (no traceback)."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def flip_bytes_of(path: Path, tensor: torch.Tensor) -> None:
    """Overwrite bytes in the middle of ``tensor``'s data where ``path`` stores it (not its header)."""
    stored = torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage()).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(stored)
    assert at >= 0, "the tensor's bytes are not in the file"
    middle = at + len(stored) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))


# --- 1. non-finite outputs and degenerate codes are failures ---------------------------------

class NaNOutputCSQ(CSQ):
    """CSQ whose output (a tensor) turns NaN from training step 30 on (digits: 24 steps an epoch)."""

    name = "nan-output-csq"

    def on_step_start(self, step: int) -> None:
        super().on_step_start(step)
        self.step = step

    def forward(self, features):
        out = super().forward(features)
        return out * float("nan") if self.training and self.step >= 30 else out


class NaNOutputMLH(MLH):
    """MLH whose output (a dataclass of tensors) has a NaN field from training step 30 on."""

    name = "nan-output-mlh"

    def on_step_start(self, step: int) -> None:
        super().on_step_start(step)
        self.step = step

    def forward(self, features):
        out = super().forward(features)
        if not (self.training and self.step >= 30):
            return out
        first = dataclasses.fields(out)[0].name
        return dataclasses.replace(out, **{first: getattr(out, first) * float("nan")})


class NaNCodesCSQ(CSQ):
    """CSQ that trains normally and gives NaN continuous codes at encoding."""

    name = "nan-codes-csq"

    def codes(self, output):
        codes = super().codes(output)
        return codes if self.training else codes * float("nan")


class OneCodeCSQ(CSQ):
    """CSQ whose every item gets the same (finite) code."""

    name = "one-code-csq"

    def codes(self, output):
        return torch.ones_like(super().codes(output))


@pytest.fixture
def register():
    added = []

    def add(cls):
        METHODS.register(cls.name, cls)
        added.append(cls.name)
        return cls.name

    yield add
    for name in added:
        del METHODS._entries[name]


@pytest.mark.parametrize("cls", [NaNOutputCSQ, NaNOutputMLH])
def test_non_finite_output_fails_the_run_before_the_loss(cli, tmp_path, register, cls):
    name = register(cls)
    result = cli("run", "--methods", name, *RUN, "--epochs", "2", "--results", tmp_path)
    assert result.exit_code == 1
    record = read_record(folder_of(tmp_path, name))
    assert record["status"] == "failed"
    assert record["reason"] == "non-finite model output at step 30 (epoch 1)"


@pytest.mark.parametrize("cls, reason", [
    (NaNCodesCSQ, "non-finite model output for 200 of 200 items (encode queries)"),
    (OneCodeCSQ, "degenerate codes: all 1597 database items have the same code"),
])
def test_non_finite_or_degenerate_codes_fail_the_run(cli, tmp_path, register, cls, reason):
    name = register(cls)
    result = cli("run", "--methods", name, *RUN, "--epochs", "1", "--results", tmp_path)
    assert result.exit_code == 1 and reason in result.output
    record = read_record(folder_of(tmp_path, name))
    assert record["status"] == "failed" and record["reason"] == reason
    assert not (folder_of(tmp_path, name) / "codes.npz").exists()


def test_diverged_training_is_not_recorded_done(cli, tmp_path):
    """The issue's probe: lr=1e30 gave status done, mAP 0.104, every item one code."""
    result = cli("run", "--methods", "mlh", *RUN, "--set", "epochs=1", "--set", "batch_size=4096", "--set", "lr=1e30",
                 "--results", tmp_path)
    assert result.exit_code == 1
    record = read_record(folder_of(tmp_path, "mlh"))
    assert record["status"] == "failed" and record["reason"].startswith(("non-finite", "degenerate codes"))


def test_non_finite_cached_features_fail_the_frozen_run(cli, tmp_path, monkeypatch):
    real = runner_module.cached_features

    def with_a_nan_row(*args, **kwargs):
        features, from_cache = real(*args, **kwargs)
        features = features.clone()
        features[7] = float("nan")
        return features, from_cache

    monkeypatch.setattr(runner_module, "cached_features", with_a_nan_row)
    result = cli("run", "--methods", "csq", *RUN, "--epochs", "1", "--frozen-backbone", "--results", tmp_path)
    assert result.exit_code == 1
    reason = read_record(folder_of(tmp_path, "csq"))["reason"]
    assert reason.startswith("non-finite backbone features for 1 of 1797 items")


# --- 2. artifacts are checked against their digests ------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DPSH run on digits, its model kept (trained once for the tests below)."""
    root = tmp_path_factory.mktemp("finished")
    assert invoke("run", "--methods", "dpsh", *RUN, "--epochs", "1", "--results", root).exit_code == 0
    return folder_of(root, "dpsh")


@pytest.fixture
def finished_run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`trained_run` of the test's own, to damage."""
    return Path(shutil.copytree(trained_run, folder_of(tmp_path, "dpsh")))


def test_record_states_the_codes_digest(finished_run):
    info = read_record(finished_run)["artifacts"]["codes"]
    assert info["file"] == "codes.npz" and info["bytes"] == (finished_run / "codes.npz").stat().st_size
    assert info["sha256"] == storage.file_sha256(finished_run / "codes.npz")


def test_flipped_bytes_in_the_model_are_found_by_search_and_export(finished_run, tmp_path):
    model = finished_run / "model.pt"
    payload = torch.load(model, weights_only=True)
    flip_bytes_of(model, max(payload["backbone_state"].values(), key=torch.Tensor.numel))
    for args in (["search", finished_run, "--item", "0"],
                 ["export", finished_run, "--out", tmp_path / "model.ts"]):
        line = one_line_error(invoke(*args))
        assert f"{model} is damaged (its sha256 differs from the record's)" in line
    assert not (tmp_path / "model.ts").exists()


@pytest.mark.parametrize("state", ["flipped", "empty", "empty, an older record"])
def test_damaged_codes_are_one_line_for_search_and_index(finished_run, state):
    codes = finished_run / "codes.npz"
    if state == "flipped":
        flip_bytes_of(codes, torch.from_numpy(np.frombuffer(codes.read_bytes()[-400:-200], dtype=np.uint8).copy()))
    else:
        codes.write_bytes(b"")
    if state.endswith("older record"):  # no artifacts.codes: no digest to check, the file is read and fails
        record = read_record(finished_run)
        record["artifacts"].pop("codes", None)
        write_record(finished_run, record)
    for args in (["search", finished_run, "--item", "0"], ["index", finished_run]):
        line = one_line_error(invoke(*args))
        assert str(codes) in line and ("is damaged" in line or "cannot be read" in line)


def test_flipped_bytes_in_a_checkpoint_weight_are_refused(cli, tmp_path):
    args = ["run", "--methods", "csq", *RUN, "--epochs", "1", "--results", tmp_path]
    assert cli(*args, "--set", "keep_checkpoint=true").exit_code == 0
    folder = folder_of(tmp_path, "csq")
    checkpoint = folder / "checkpoint.pt"
    fingerprint = read_record(folder)["fingerprint"]
    (folder / "result.json").unlink()  # as if the run had been interrupted after its last epoch
    conv = next(v for k, v in load_checkpoint(checkpoint, fingerprint)["encoder"].items() if v.dim() == 4)
    flip_bytes_of(checkpoint, conv)
    result = cli(*args)
    assert result.exit_code == 1
    reason = read_record(folder)["reason"]
    assert reason == (f"checkpoint {checkpoint} is damaged (its sha256 differs from the one stored in it); "
                      "remove it or rerun with --force")
    assert cli(*args, "--force").exit_code == 0


def test_checkpoint_carries_its_digest_and_loads_with_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"fingerprint": "f", "epoch": 3, "weight": torch.randn(5, 4)}
    checkpoint_module.save_checkpoint(path, state)
    stored = torch.load(path, weights_only=True)
    assert stored["format"] == 1 and len(stored["sha256"]) == 64 and stored["state"].dtype == torch.uint8
    loaded = read_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["weight"], state["weight"])
    torch.save(state, path)  # an older checkpoint: no digest, still resumable
    assert load_checkpoint(path, "f")["epoch"] == 3


# --- 3. a damaged record is named, never overwritten, and the rest goes on -----------------------

@pytest.mark.parametrize("content, detail", [
    (b"", "(Expecting value: line 1 column 1 (char 0))"),
    (b'{"method": "csq", "status": "do', "(Unterminated string starting at"),
    (b"\x00\xff\xfe garbage", "('utf-8' codec can't decode byte 0xff in position 1"),
    (b"[1, 2]", "(not a JSON object)"),
    (b'{"method": "csq", "dataset": "digits", "bits": 16, "seed": 0}', "(no status)"),
])
def test_damaged_record_is_one_error_naming_the_file(tmp_path, content, detail):
    (tmp_path / "result.json").write_bytes(content)
    with pytest.raises(DamagedRecordError) as caught:
        read_record(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'result.json'} is damaged {detail}")
    assert len(str(caught.value).splitlines()) == 1


def test_grid_reports_a_damaged_record_and_goes_on_force_archives_it(cli, tmp_path):
    args = ["run", "--methods", "csq,dpsh", *RUN, "--epochs", "1", "--results", tmp_path]
    for config in planned("csq,dpsh", epochs=1):  # two finished runs (records alone: neither is trained again)
        record_done(config, tmp_path)
    record = folder_of(tmp_path, "csq") / "result.json"
    damaged = record.read_bytes()[:100]
    record.write_bytes(damaged)
    result = cli(*args)
    assert result.exit_code == 1
    assert f"csq digits 16 bits seed 0: FAILED: {record} is damaged (" in result.output
    assert "--force archives it and reruns the run" in result.output
    assert "dpsh digits 16 bits seed 0: skipped" in result.output
    assert record.read_bytes() == damaged  # never overwritten silently
    forced = cli("run", "--methods", "csq", *RUN, "--epochs", "1", "--results", tmp_path, "--force")
    assert forced.exit_code == 0, forced.output
    assert read_record(record.parent)["status"] == "done"
    (archived,) = (record.parent / "history").glob("damaged-*/result.json")
    assert archived.read_bytes() == damaged


def test_search_export_and_index_name_a_damaged_record(finished_run, tmp_path):
    (finished_run / "result.json").write_text('{"method": "dpsh", "status": ')
    for args in (["search", finished_run, "--item", "0"], ["export", finished_run, "--out", tmp_path / "m.ts"],
                 ["index", finished_run]):
        assert f"{finished_run / 'result.json'} is damaged (" in one_line_error(invoke(*args))


def test_report_skips_damaged_records_and_codes_with_a_warning(cli, tmp_path, capsys):
    root = tmp_path / "results"
    for method in ("csq", "dpsh", "hashnet"):
        fake_run(root, method, 16, 0, quality=0.1)
    bad_record = run_dir(root, "toy", "hashnet", 16, 0) / "result.json"
    bad_record.write_text('{"method": "hashnet"')
    bad_codes = run_dir(root, "toy", "csq", 16, 0) / "codes.npz"  # the first by path: the floor's run
    bad_codes.write_bytes(b"")
    result = cli("report", "--results", root, "--out", tmp_path / "report", "--tsne-methods", "none")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {bad_record} is damaged (Expecting ',' delimiter: line 1 column 21 (char 20)); "
                        "skipped",
                        f"warning: {bad_codes} cannot be read (No data left in file); skipped"]
    table = (tmp_path / "report" / "map.md").read_text()
    assert "csq" in table and "dpsh" in table and "hashnet" not in table
    assert "random codes" in table  # the floor came from the next run


def test_iter_records_skips_a_damaged_record_with_a_warning(tmp_path, capsys):
    fake_run(tmp_path, "csq", 16, 0, quality=0.1)
    damaged = run_dir(tmp_path, "toy", "dpsh", 16, 0) / "result.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("")
    assert [record["method"] for _, record in iter_records(tmp_path)] == ["csq"]
    assert capsys.readouterr().err == f"warning: {damaged} is damaged (Expecting value: line 1 column 1 (char 0)); " \
                                      "skipped\n"
    assert not recorded_done(damaged.parent)  # a launcher submits it: its job reports the damage


def test_check_records_names_a_damaged_record(tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_records.py"
    spec = importlib.util.spec_from_file_location("check_records", script)
    check_records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_records)
    (tmp_path / "result.json").write_text("{")
    status, detail = check_records.check_run({"folder": str(tmp_path), "fingerprint": "f"}, metrics=False)
    assert status == "damaged" and detail.startswith(f"{tmp_path / 'result.json'} is damaged (")


# --- 4. a finished run made on other data is not reused ------------------------------------------

def test_data_digest_ignores_where_the_data_is_and_sees_what_it_is(tmp_path):
    first = write_list_dataset(tmp_path / "a", corrupt=False)
    shutil.copytree(first, tmp_path / "b")
    digest = load_dataset(f"listfile:{first}").digest()
    assert load_dataset(f"listfile:{tmp_path / 'b'}").digest() == digest
    lines = (tmp_path / "b" / "train.txt").read_text().splitlines()
    lines[0] = lines[0].replace("img/0.jpg", "img/59.jpg")  # another image, the same labels
    (tmp_path / "b" / "train.txt").write_text("\n".join(lines) + "\n")
    assert load_dataset(f"listfile:{tmp_path / 'b'}").digest() != digest


def list_run_args(data: Path, results: Path) -> list:
    """A short csq run on a list-file dataset (small_cnn: its weights are the dataset's default, DEFAULT)."""
    return ["run", "--methods", "csq", *RUN, "--epochs", "1", "--datasets", f"listfile:{data}", "--backbone",
            "small_cnn", "--batch-size", "8", "--set", "num_workers=1", "--results", results]


def test_edited_lists_refuse_the_stale_record_force_reruns(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=False)
    args = list_run_args(data, tmp_path / "r")
    assert cli(*args).exit_code == 0
    folder = folder_of(tmp_path / "r", "csq", f"listfile:{data}")
    old_digest = read_record(folder)["protocol"]["data_digest"]
    assert cli(*args).output.count("skipped, record exists") == 1  # the same data: reused
    queries = (data / "test.txt").read_text()
    assert queries.startswith("img/30.jpg 1 0 0\n")
    (data / "test.txt").write_text(queries.replace("img/30.jpg 1 0 0\n", "img/30.jpg 0 1 0\n", 1))  # one label fixed
    line = one_line_error(cli(*args))
    assert f"{folder} holds a finished run made on other data (data: {old_digest} -> " in line
    forced = cli(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert read_record(folder)["protocol"]["data_digest"] != old_digest
    assert len(list((folder / "history").glob("*/result.json"))) == 1


# --- 5. disk full, orphan temporaries, validation size, permissions, the setup line ----------------

def test_setup_line_says_what_the_record_will_say(cli, tmp_path):
    data = write_list_dataset(tmp_path / "data", corrupt=False)
    result = cli(*list_run_args(data, tmp_path / "r"))
    assert result.exit_code == 0, result.output
    backbone = read_record(folder_of(tmp_path / "r", "csq", f"listfile:{data}"))["backbone"]
    assert (backbone["weights"], backbone["image_size"]) == ("random init", 16)  # not the config's "DEFAULT"
    assert result.output.startswith(f"listfile:{data}: backbone small_cnn (random init), 16 px, fine-tuned")


class FullDisk:
    """A file handle on a full disk: every write fails as ``error`` says."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def write(self, data) -> int:
        raise self.error


def full_disk_for(error: Exception):
    """An ``atomic_write`` whose writes fail with ``error`` (through the real one, which sees the failure)."""
    @contextlib.contextmanager
    def full_disk(path, mode="w"):
        with storage.atomic_write(path, mode):
            yield FullDisk(error)

    return full_disk


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: "
                 "file write failed"),
])
def test_full_disk_is_said_in_plain_words_in_the_record(cli, tmp_path, monkeypatch, error):
    monkeypatch.setattr(checkpoint_module, "atomic_write", full_disk_for(error))
    result = cli("run", "--methods", "csq", *RUN, "--epochs", "1", "--results", tmp_path)
    assert result.exit_code == 1
    folder = folder_of(tmp_path, "csq")
    assert read_record(folder)["reason"] == f"no space left on device: cannot write {folder / 'checkpoint.pt'}"
    assert not list(folder.glob(".*.tmp"))


def test_full_disk_when_the_model_is_kept_fails_that_run_and_the_grid_goes_on(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "atomic_write", full_disk_for(OSError(errno.ENOSPC, "No space left on device")))
    result = cli("run", "--methods", "lsh,itq", *RUN, "--epochs", "1", "--results", tmp_path)
    assert result.exit_code == 1 and "2 of 2 runs failed" in result.output
    for method in ("lsh", "itq"):
        folder = folder_of(tmp_path, method)
        assert read_record(folder)["reason"] == f"no space left on device: cannot write {folder / 'model.pt'}"


def test_atomic_write_names_a_full_disk_and_leaves_no_temporary(tmp_path):
    with pytest.raises(DiskFullError, match=f"no space left on device: cannot write {tmp_path / 'x.json'}"), \
            atomic_write(tmp_path / "x.json") as handle:
        handle.write("{}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_orphan_temporaries_are_removed_when_the_run_starts(cli, tmp_path):
    folder = folder_of(tmp_path, "csq")
    folder.mkdir(parents=True)
    orphans = [folder / ".checkpoint.pt.k1ll3d.tmp", folder / ".result.json.x7z0q2.tmp"]
    for path in orphans:
        path.write_bytes(b"half a write")
    keep = folder / "notes.tmp"  # not one of atomic_write's names
    keep.write_text("mine")
    assert cli("run", "--methods", "csq", *RUN, "--epochs", "1", "--results", tmp_path).exit_code == 0
    assert not any(path.exists() for path in orphans) and keep.exists()
    assert "removed temporary files of killed writes: .checkpoint.pt.k1ll3d.tmp, .result.json.x7z0q2.tmp" in \
        (folder / "log.txt").read_text()


def test_too_large_validation_fails_before_any_run(cli, tmp_path):
    line = one_line_error(cli("run", "--methods", "csq", *RUN, "--set", "validation=99999", "--results", tmp_path))
    assert "validation must leave at least 2 of the" in line and "got 99999" in line
    assert not list(tmp_path.glob("**/result.json"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "report.md") as handle:
            handle.write("# report\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == mode
