"""One key space, one checker: how a run's values are layered and checked (hashbench.config),
tested on the resolution itself rather than through training runs."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from hashbench.config import CONFIG_OPTIONS, CONFIG_PARAMS, RUNTIME_KEYS, Layer, RunConfig, resolve_with_sources
from hashbench.method import HashMethod, integer
from hashbench.validation import HashbenchError


class Plugin(HashMethod):
    """A third-party method with a recipe of its own."""

    steps = integer(3, 1)
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 0.5, "epochs": 7, "augment": "flip"}
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 2}
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {"cifar10*": {"steps": 5}}


def resolve(dataset="digits", dataset_defaults=None, overrides=None, file=None, method_cls=Plugin):
    defaults = {"backbone": "small_cnn", "weights": None, "image_size": 16} if dataset_defaults is None else \
        dataset_defaults
    return resolve_with_sources(method="plugin", method_cls=method_cls, dataset=dataset, dataset_defaults=defaults,
                                bits=16, seed=0, overrides=overrides or {}, file=file)


def test_a_methods_recipe_is_not_replaced_by_a_datasets_defaults():
    """The digits dataset sets its model only: a plugin's recipe reaches its runs there."""
    config, sources = resolve()
    assert (config.optimizer, config.lr, config.epochs, config.augment) == ("sgd", 0.5, 7, "flip")
    assert sources["lr"] == sources["epochs"] == "method recipe"
    assert (config.backbone, config.image_size, sources["backbone"]) == ("small_cnn", 16, "dataset")


def test_a_dataset_may_set_its_model_only():
    with pytest.raises(HashbenchError, match=r"dataset digits may set only backbone, weights, weights_path, "
                                             r"image_size .*; it sets backbone, lr"):
        resolve(dataset_defaults={"backbone": "small_cnn", "lr": 1e-3})


def test_the_layers_in_order():
    file = Layer("file", {"epochs": 9, "steps": 4, "frozen_backbone": True}, file="x.toml",
                 tables={"steps": "[method.plugin]"})
    config, sources = resolve(dataset="cifar10", file=file, overrides={"lr": "0.25"})
    assert (config.epochs, sources["epochs"]) == (9, "file")  # over the frozen recipe's 2
    assert (config.hparams["steps"], sources["hparams.steps"]) == (4, "file [method.plugin]")  # over cifar10*'s 5
    assert (config.lr, sources["lr"]) == (0.25, "command line")
    frozen, frozen_sources = resolve(dataset="cifar10", overrides={"frozen_backbone": True})
    assert (frozen.epochs, frozen_sources["epochs"]) == (2, "frozen recipe")
    assert (frozen.hparams["steps"], frozen_sources["hparams.steps"]) == (5, "method recipe for cifar10*")
    assert frozen_sources["momentum"] == "runner default"


def test_command_line_text_is_read_by_each_keys_declaration():
    config, _ = resolve(overrides={"epochs": "12", "lr": "1e-2", "frozen_backbone": "false", "scheduler": "none",
                                   "image_size": "none", "tag": "2024", "steps": "6"})
    assert (config.epochs, config.lr, config.frozen_backbone, config.scheduler) == (12, 0.01, False, "none")
    assert (config.image_size, config.tag, config.hparams["steps"]) == (None, "2024", 6)


def test_a_files_values_are_typed_as_written_and_none_is_a_word():
    file = Layer("file", {"image_size": "none", "augment": "none"}, file="x.toml")
    config, _ = resolve(file=file)
    assert (config.image_size, config.augment) == (None, "none")  # "none" is a choice of augment
    for key, value in (("image_size", "64"), ("lr", "fast"), ("frozen_backbone", 1), ("steps", "3")):
        with pytest.raises(HashbenchError) as err:
            resolve(file=Layer("file", {key: value}, file="x.toml", tables={key: "[grid a]"}))
        assert str(err.value).startswith("x.toml: [grid a] ") and f"got {value!r}" in str(err.value)


def test_one_checker_for_direct_construction_too():
    with pytest.raises(HashbenchError, match=r"^batch_size must be an integer >= 2 and <= 65536; got 1$"):
        RunConfig(method="csq", dataset="digits", bits=16, batch_size=1).validate()
    with pytest.raises(HashbenchError, match=r"^lr_step must be an integer >= 1 with scheduler=step; got 0$"):
        RunConfig(method="csq", dataset="digits", bits=16, scheduler="step").validate()
    assert RunConfig(method="csq", dataset="digits", bits=16, lr=1).validate().lr == 1.0  # coerced to float


def test_the_weights_follow_the_backbone():
    chosen, sources = resolve(overrides={"backbone": "resnet18"})
    assert (chosen.weights, sources["weights"]) == ("DEFAULT", "command line (backbone's default weights)")
    local, sources = resolve(dataset_defaults={"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"},
                             overrides={"weights_path": "w.pt"})
    assert (local.weights, local.weights_path) == (None, "w.pt")
    kept, _ = resolve(dataset_defaults={"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"})
    assert kept.weights == "IMAGENET1K_V1"


def test_every_field_is_declared_once():
    """Every config key has its Param; runtime keys and options come from the same declaration."""
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"method", "dataset", "bits", "seed", "hparams"}
    assert set(CONFIG_PARAMS) == fields
    assert {"device", "progress", "tag", "keep_model"} <= set(RUNTIME_KEYS) and "lr" not in RUNTIME_KEYS
    assert CONFIG_OPTIONS["weights_path"] == "--weights" and CONFIG_OPTIONS["epochs"] == "--epochs"
    for key, param in CONFIG_PARAMS.items():
        assert param.check(key, getattr(RunConfig, key)) == getattr(RunConfig, key)
