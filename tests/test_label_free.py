"""Label-free and closed-form methods on the one runner: labels never reach a method that
declares ``supervised = False``, closed-form fits need fixed features, and ``raw`` pixels
serve as those features on digits."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from hashbench.config import resolve_config
from hashbench.data.datasets import get_dataset, load_dataset
from hashbench.engine.runner import execute
from hashbench.models.backbones import build_backbone
from hashbench.registry import METHODS
from hashbench.results import load_codes
from hashbench.validation import HashbenchError

LABEL_FREE = [name for name in METHODS.names() if not METHODS.get(name).supervised]


def digits_config(method: str, **overrides):
    return resolve_config(method=method, method_cls=METHODS.get(method), dataset="digits",
                          dataset_defaults=get_dataset("digits")[0].defaults, bits=16,
                          seed=0, overrides={"epochs": 2, "progress": False, **overrides})


def with_permuted_training_labels(dataset):
    labels = dataset.labels.clone()
    train = torch.as_tensor(dataset.split.train)
    labels[train] = labels[train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))]]
    return dataclasses.replace(dataset, labels=labels)


@pytest.mark.parametrize("name", LABEL_FREE)
def test_label_free_methods_never_see_labels_and_ignore_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    cls = METHODS.get(name)
    seen = []
    for hook in ("on_fit_start", "fit" if cls.closed_form else "loss"):
        original = getattr(cls, hook)

        def spy(self, *args, _original=original, **kwargs):
            seen.append(kwargs["labels"] if "labels" in kwargs else args[-1])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, hook, spy)
    dataset = load_dataset("digits")
    config = digits_config(name)
    first = execute(config, tmp_path / "a", dataset)
    second = execute(config, tmp_path / "b", with_permuted_training_labels(dataset))
    assert first.status == second.status == "done", (first.reason, second.reason)
    assert seen and all(labels is None for labels in seen)
    codes_a, codes_b = load_codes(first.folder), load_codes(second.folder)
    np.testing.assert_array_equal(codes_a["query_codes"], codes_b["query_codes"])
    np.testing.assert_array_equal(codes_a["database_codes"], codes_b["database_codes"])


def test_closed_form_fit_is_recorded_and_refuses_fine_tuning(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    assert METHODS.get("itq").closed_form and not METHODS.get("dpsh").closed_form
    with pytest.raises(HashbenchError, match="itq is fitted in closed form on fixed features"):
        digits_config("itq", frozen_backbone=False)
    outcome = execute(digits_config("itq"), tmp_path, load_dataset("digits"))
    record = outcome.record
    assert outcome.status == "done" and record["method_info"]["closed_form"] is True
    assert record["backbone"]["name"] == "raw" and record["backbone"]["frozen"] is True
    assert len(record["history"]) == 1 and "loss" not in record["history"][0]
    assert record["timing"]["train_s"] > 0


def test_itq_beats_lsh_on_the_default_dataset(cli, tmp_path):
    result = cli("run", "--methods", "itq,lsh", "--bits", "32", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    maps = {}
    for name in ("itq", "lsh"):
        metrics = json.loads((tmp_path / "digits" / name / "32" / "seed0" / "result.json").read_text())["metrics"]
        maps[name] = metrics[f"map_expected@{metrics['topk']}"]
    assert maps["itq"] > maps["lsh"] > 0.2  # chance is about 0.1


def test_raw_backbone_gives_back_the_pixels():
    backbone = build_backbone("raw", None)
    assert backbone.feature_dim == 192 and not list(backbone.module.parameters())
    image = torch.rand(2, 3, 8, 8)
    shown = torch.nn.functional.interpolate(image, size=16, mode="nearest")  # digits at 16 px
    torch.testing.assert_close(backbone.module(shown), image.flatten(1))
    with pytest.raises(HashbenchError, match="raw has no weights"):
        build_backbone("raw", "IMAGENET1K_V1")
