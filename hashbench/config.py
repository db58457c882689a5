"""One run's configuration: every key declared once, and every value checked in one place.

Each field of :class:`RunConfig` carries its :class:`~hashbench.validation.Param` (default,
type, limits, help) and says whether it is a runtime key (it changes nothing about the trained
model, so the fingerprint leaves it out) and which command-line option sets it besides
``--set``. A method's hyperparameters are Params too, so config keys and hyperparameters form
one key space: ``--set``, an experiment file's top level and its ``[method.NAME]`` tables all
take any of them. :func:`resolve_with_sources` merges a run's layers and checks each merged
value once, with its Param.

A run's values come from layers, lowest first (``hashbench config show`` names the layer of
every value):

1. ``runner default``: the field's default;
2. ``method recipe``: the method's ``train_defaults`` (its reference recipe);
3. ``dataset``: the dataset's model (backbone, weights, image size);
4. ``method recipe for <pattern>``: the method's ``dataset_defaults`` matching the dataset;
5. ``frozen recipe``: the method's ``frozen_train_defaults``, when ``frozen_backbone`` is on;
6. ``file``: an experiment file (``hashbench run --config``; :mod:`hashbench.experiment`);
7. ``command line``: options and ``--set``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.data.datasets import display_name, split_display_name
from hashbench.data.images import AUGMENTATIONS
from hashbench.results import run_dir
from hashbench.validation import MAX_BITS, MIN_BITS, HashbenchError, Param, choice, flag, integer, real, text

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")
#: The tag of a validation run (``validation > 0``) given none: its numbers are never test numbers.
VALIDATION_TAG = "validation"
#: What a tag may hold (it names a folder).
TAG = Param(None, str, nullable=True, pattern=r"[A-Za-z0-9._-]+", what="letters, digits, '.', '_' or '-'",
            help="a variant grid's name: its runs are stored and reported apart (<method>+<tag>/ folders)")

#: The run keys set by the grid's own options rather than ``--set``.
GRID_OPTIONS = {"method": "--methods", "dataset": "--datasets", "bits": "--bits", "seed": "--seeds"}
BITS = integer(None, MIN_BITS, MAX_BITS, help="code length")
SEED = integer(0, 0, help="training seed")
#: Keys a dataset may set: the model it is read with. Training settings belong to methods and users.
DATASET_KEYS = ("backbone", "weights", "weights_path", "image_size")


def setting(param: Param, *, runtime: bool = False, option: str | None = None) -> Any:
    """A :class:`RunConfig` field declared by its Param. ``runtime``: a key that changes nothing
    about the trained model or its numbers (left out of the fingerprint); ``option``: the
    command-line flag that sets it besides ``--set`` (``--a/--b`` for a flag pair)."""
    return field(default=param.default, metadata={"param": param, "runtime": runtime, "option": option})


@dataclass
class RunConfig:
    """Every value a run uses; the record stores all of it."""

    method: str
    dataset: str
    bits: int
    seed: int = 0
    tag: str | None = setting(TAG, runtime=True)
    # data and protocol
    data_root: str | None = setting(text(None, nullable=True, help="where the datasets live (default: ./data)"),
                                    runtime=True, option="--data-root")
    split_seed: int = setting(integer(0, 0, help="seed of the query / train / database split"))
    topk: int | None = setting(integer(None, 1, nullable=True, help="mAP cut-off K; none: the protocol's"))
    validation: int = setting(integer(0, 0, help="hold out this many training items (drawn with split_seed) as the "
                                                 "queries, searched against the database without them; the test "
                                                 "queries are never encoded"))
    skip_corrupt: bool = setting(flag(False, help="list files: leave out (and count) unreadable images"))
    download: bool = setting(flag(False, help="CIFAR-10: fetch torchvision's files into <data root>/cifar10"),
                             runtime=True)
    allow_outside_root: bool = setting(flag(False, help="list files: accept image paths that are absolute or climb "
                                                        "out of the list folder with '..'"))
    # model
    backbone: str = setting(text("resnet50", help="backbone name (hashbench list backbones)"), option="--backbone")
    weights: str | None = setting(text("DEFAULT", nullable=True, help="torchvision weights name; none: random init"))
    weights_path: str | None = setting(text(None, nullable=True, help="a local state dict for the backbone instead "
                                                                      "of torchvision's pretrained weights"),
                                       option="--weights")
    image_size: int | None = setting(integer(None, 8, 1024, nullable=True,
                                             help="input side in pixels; none: the weights' own"))
    frozen_backbone: bool = setting(flag(False, help="train only the hash head(s) on cached backbone features"),
                                    option="--frozen-backbone/--fine-tune")
    augment: str = setting(choice("flip", AUGMENTATIONS, help="train-time augmentation"))
    # Cached features are centred and scaled with the training split's statistics: linear
    # heads on raw post-ReLU features (large common offset) train badly, DPSH diverges.
    standardize_features: bool = setting(flag(True, help="standardise cached features with the training split's "
                                                         "statistics"))
    # optimisation
    optimizer: str = setting(choice("adam", OPTIMIZERS))
    lr: float = setting(real(1e-4, 0.0, open_low=True, help="learning rate of the hash head(s)"), option="--lr")
    backbone_lr_mult: float = setting(real(1.0, 0.0, help="the backbone's lr as a multiple of lr (0: frozen)"))
    weight_decay: float = setting(real(0.0, 0.0))
    momentum: float = setting(real(0.9, 0.0, help="SGD's momentum"))
    nesterov: bool = setting(flag(False, help="SGD's Nesterov momentum"))
    batch_size: int = setting(integer(64, 2, 1 << 16), option="--batch-size")
    epochs: int = setting(integer(50, 1, 100_000), option="--epochs")
    scheduler: str = setting(choice("none", SCHEDULERS))
    lr_step: int = setting(integer(0, 0, help="epochs between decays for scheduler=step"))
    lr_gamma: float = setting(real(0.1, 0.0, open_low=True, help="decay factor of scheduler=step"))
    # runtime
    device: str = setting(choice("auto", DEVICES), runtime=True, option="--device")
    num_workers: int = setting(integer(2, 0, 64, help="DataLoader workers decoding image files"), runtime=True)
    keep_checkpoint: bool = setting(flag(False, help="keep the last epoch's checkpoint of a finished run"),
                                    runtime=True)
    keep_model: bool = setting(flag(True, help="keep the trained hash function as model.pt"), runtime=True)
    progress: bool = setting(flag(True, help="show progress per run"), runtime=True,
                             option="--progress/--no-progress")
    tensorboard: bool = setting(flag(False, help="write loss terms, lr and throughput to <run>/tb/"), runtime=True)
    eval_every: int = setting(integer(0, 0, help="with validation > 0: record the validation mAP every N epochs"),
                              runtime=True)
    # the method's own hyperparameters
    hparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.validation and self.tag is None:  # validation numbers never land among test numbers
            self.tag = VALIDATION_TAG

    def validate(self) -> RunConfig:
        """Every key checked (and coerced) by its Param, whoever built the config, then the rules
        between keys."""
        for key, param in CONFIG_PARAMS.items():
            setattr(self, key, param.check(key, getattr(self, key)))
        BITS.check("bits", self.bits)
        SEED.check("seed", self.seed)
        if self.eval_every and not self.validation:
            raise HashbenchError("eval_every needs validation > 0 (held-out training items): a per-epoch mAP on "
                                 "the test queries invites choosing the epoch on them")
        if self.scheduler == "step" and self.lr_step < 1:
            raise HashbenchError(f"lr_step must be an integer >= 1 with scheduler=step; got {self.lr_step}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def folder(self, results_root: str | Path) -> Path:
        """This run's folder in the results store."""
        return run_dir(results_root, display_name(self.dataset), self.method, self.bits, self.seed, self.tag)

    def fingerprint(self) -> str:
        """Digest of everything that shapes the trained model (runtime keys excluded)."""
        return config_fingerprint(self.as_dict())


#: Every config key (the grid's and ``hparams`` aside) and its Param.
CONFIG_PARAMS: dict[str, Param] = {f.name: f.metadata["param"] for f in dataclasses.fields(RunConfig)
                                   if "param" in f.metadata}
CONFIG_KEYS = tuple(CONFIG_PARAMS)
#: Keys that change nothing about the trained model or its numbers; left out of the fingerprint
#: that guards a checkpoint or a finished record against another config.
RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("runtime"))
#: Config keys with a command-line option of their own: key -> option (``--a/--b`` for a flag pair).
CONFIG_OPTIONS = {f.name: f.metadata["option"] for f in dataclasses.fields(RunConfig) if f.metadata.get("option")}

#: Keys added after records of schema 2 were published, with the value under which they
#: change nothing: left out of the fingerprint at that value, so older records still match.
NEUTRAL_VALUES = {"validation": 0, "allow_outside_root": False}


def config_fingerprint(values: dict[str, Any]) -> str:
    """:meth:`RunConfig.fingerprint` of a config dict (as a record stores it)."""
    shaping = {k: v for k, v in values.items()
               if k not in RUNTIME_KEYS and not (k in NEUTRAL_VALUES and v == NEUTRAL_VALUES[k])}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--set key=value`` items as a dict of texts (each read by its key's Param on resolution)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HashbenchError(f"--set takes key=value; got {item!r}")
        out[key.strip()] = value
    return out


def method_layers(method_cls: Any, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """The method's settings for ``dataset``: every ``dataset_defaults`` entry whose
    pattern matches the dataset's name, as (pattern, values), in declaration order."""
    dataset = split_display_name(dataset)[1]  # what the data is, not what it is called
    return [(pattern, values) for pattern, values in method_cls.dataset_defaults.items()
            if fnmatch.fnmatch(dataset, pattern)]


def unknown_key_message(key: str, method: str, hparams: list[str]) -> str:
    if key in GRID_OPTIONS:
        return f"{key} is a grid option: use {GRID_OPTIONS[key]} (or {key}s = [...] in a file) instead"
    close = difflib.get_close_matches(key, [*CONFIG_KEYS, *hparams], n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"unknown config key {key!r} for method {method}{hint} (config keys: {', '.join(sorted(CONFIG_KEYS))}; "
            f"{method} hyperparameters: {', '.join(sorted(hparams)) or 'none'})")


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict (:meth:`RunConfig.as_dict`, or a record's) with its hyperparameters
    as ``hparams.<name>`` keys beside the config keys, the form provenance is reported in."""
    return {**{k: v for k, v in config.items() if k != "hparams"},
            **{f"hparams.{k}": v for k, v in config.get("hparams", {}).items()}}


#: Provenance labels of the layers below the user's, lowest first (``hashbench config show``).
RUNNER_DEFAULT, METHOD_DEFAULT, METHOD_RECIPE, DATASET, FROZEN_RECIPE = (
    "runner default", "method default", "method recipe", "dataset", "frozen recipe")
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Layer:
    """Values from one source. ``name`` is its provenance label (``method recipe``,
    ``command line``, ``file``, ...); a file's layer also carries the file and, per key, the
    table the value was written in, so that an error about a value points at where to fix it."""

    name: str
    values: dict[str, Any]
    file: str | None = None
    tables: dict[str, str] = field(default_factory=dict)

    def source(self, key: str) -> str:
        """Where ``key``'s value came from, e.g. ``file [grid main]``."""
        return " ".join(filter(None, [self.name, self.tables.get(key)]))

    def locate(self, message: str, key: str) -> HashbenchError:
        """An error ``message`` about ``key``, prefixed with the file and table it was written in."""
        if self.file is None:
            return HashbenchError(message)
        table = self.tables.get(key) or ""
        method, sep, rest = message.partition(": ")
        if sep and table.endswith(f"[method.{method}]"):  # "[method.mlh] mlh: alpha ..." would say mlh twice
            message = rest
        return HashbenchError(f"{self.file}: {table + ' ' if table else ''}{message}")


def resolve_config(**arguments: Any) -> RunConfig:
    """:func:`resolve_with_sources` without the sources."""
    return resolve_with_sources(**arguments)[0]


def resolve_with_sources(*, method: str, method_cls: Any, dataset: str, dataset_defaults: dict[str, Any], bits: int,
                         seed: int, overrides: dict[str, Any], file: Layer | None = None
                         ) -> tuple[RunConfig, dict[str, str]]:
    """A run's validated :class:`RunConfig` from its layers (see the module docstring), and for
    every config key and ``hparams.<name>`` the label of the layer that set it. ``file`` is an
    experiment file's values for this method, ``overrides`` the command line's (text, read by
    each key's Param). The merged values are checked once, each by its Param
    (:meth:`RunConfig.validate`, ``method_cls.check_params``); an error names the key (and the
    method, for a hyperparameter) and, for a file's value, the file and table."""
    if set(dataset_defaults) - set(DATASET_KEYS):
        raise HashbenchError(f"dataset {dataset} may set only {', '.join(DATASET_KEYS)} (training settings are the "
                             f"method's and the user's); it sets {', '.join(sorted(dataset_defaults))}")

    def param_of(layer: Layer, key: str) -> Param:
        if key in CONFIG_PARAMS:
            return CONFIG_PARAMS[key]
        if key in method_cls.params:
            return method_cls.params[key]
        raise layer.locate(unknown_key_message(key, method, list(method_cls.params)), key)

    def read(layer: Layer) -> Layer:
        """The layer's values as Python values: command-line text read by each key's Param; a
        file's "none" (TOML has no null) as None."""
        if layer.name == COMMAND_LINE:
            converted = {key: param_of(layer, key).from_text(value) for key, value in layer.values.items()}
        else:
            converted = {key: None if param_of(layer, key).means_none(value) else value
                         for key, value in layer.values.items()}
        return dataclasses.replace(layer, values=converted)

    users = [read(layer) for layer in (file, Layer(COMMAND_LINE, dict(overrides))) if layer is not None]
    for_dataset = method_layers(method_cls, dataset)
    layers = [read(layer) for layer in (
        Layer(METHOD_RECIPE, method_cls.train_defaults), Layer(DATASET, dataset_defaults),
        *[Layer(f"{METHOD_RECIPE} for {pattern}", recipe) for pattern, recipe in for_dataset])]
    frozen_owner = next((layer for layer in reversed([*layers, *users]) if "frozen_backbone" in layer.values), None)
    frozen = frozen_owner is not None and frozen_owner.values["frozen_backbone"] is True
    if method_cls.closed_form and not frozen:
        raise (frozen_owner or Layer(RUNNER_DEFAULT, {})).locate(
            f"{method} is fitted in closed form on fixed features and cannot fine-tune a backbone; drop --fine-tune "
            "(or frozen_backbone=false)", "frozen_backbone")
    if frozen:
        layers.append(read(Layer(FROZEN_RECIPE, method_cls.frozen_train_defaults)))
    values = {key: param.default for key, param in CONFIG_PARAMS.items()}
    hparams = dict(method_cls.defaults)
    sources = {**dict.fromkeys(values, RUNNER_DEFAULT),
               **dict.fromkeys((f"hparams.{key}" for key in hparams), METHOD_DEFAULT)}
    owners: dict[str, Layer] = {}
    for layer in [*layers, *users]:
        for key, value in layer.values.items():
            label = key if key in CONFIG_PARAMS else f"hparams.{key}"
            (values if key in CONFIG_PARAMS else hparams)[key] = value
            sources[label], owners[label] = layer.source(key), layer
    _weights_follow_the_backbone(values, sources, users)
    try:
        hparams = method_cls.check_params(hparams, name=method)
        config = RunConfig(method=method, dataset=dataset, bits=bits, seed=seed, hparams=hparams, **values).validate()
    except HashbenchError as err:
        raise _locate(err, method, owners) from None
    if sources["tag"] == RUNNER_DEFAULT and config.tag == VALIDATION_TAG:
        sources["tag"] = f"{RUNNER_DEFAULT} (validation > 0)"
    return config, sources


def _locate(err: HashbenchError, method: str, owners: dict[str, Layer]) -> HashbenchError:
    """A validation error, located in the layer that gave the value it is about (messages start
    with the key: ``"<key> must ..."``, or ``"<method>: <key> must ..."`` for a hyperparameter)."""
    message = str(err)
    lead = message.removeprefix(f"{method}: ")
    hyperparameter = lead != message
    for label in sorted(owners, key=len, reverse=True):  # "lr_step" before "lr"
        key = label.removeprefix("hparams.")
        if (label.startswith("hparams.") == hyperparameter) and lead.startswith(f"{key} "):
            return owners[label].locate(message, key)
    return err


def _weights_follow_the_backbone(values: dict[str, Any], sources: dict[str, str], users: list[Layer]) -> None:
    """The one rule between backbone and weights: a local weights file replaces pretrained
    weights, and a backbone the user chose without naming weights gets its own default weights
    (the dataset's default weights belong to the dataset's default backbone)."""
    chosen = {key for layer in users for key in layer.values}
    if values["weights_path"] is not None:
        values["weights"] = None
        sources["weights"] = f"{sources['weights_path']} (weights_path)"
    elif "backbone" in chosen and not {"weights", "weights_path"} & chosen:
        values["weights"] = "DEFAULT"
        sources["weights"] = f"{sources['backbone']} (backbone's default weights)"
