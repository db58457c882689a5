"""One run's configuration, resolved in one place.

Precedence, lowest first: :class:`RunConfig`'s defaults < the method's ``train_defaults``
(its reference recipe) < the dataset's ``defaults`` (e.g. ``digits`` picks a small CNN
trained from scratch, which wants its own step size) < the method's ``dataset_defaults``
for that dataset (settings its reference uses there, e.g. OrthoHash's margin on CIFAR-10)
< ``frozen_train_defaults`` of the method when ``frozen_backbone`` is on < the user's
values: a config file's (``hashbench run --config``, see :mod:`hashbench.experiment`) <
the command line's (flags and ``--set``). The CLI drops options the user did not give, so
only given values override. Keys that are not fields of :class:`RunConfig` are the method's
hyperparameters and must be declared in its ``params``; both are validated here, once,
before any run starts. :func:`resolve_with_sources` also says which of these layers set
each value (``hashbench config show`` prints it); an error about a value from a file names
the file and the table it was written in.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.data.datasets import display_name, split_display_name
from hashbench.data.images import AUGMENTATIONS
from hashbench.results import run_dir
from hashbench.validation import (
    HashbenchError,
    check_bits,
    check_choice,
    check_int,
    check_positive_float,
)

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")

#: Keys that change nothing about the trained model or its numbers; they are left out of
#: the fingerprint that guards a checkpoint against resuming under another config.
RUNTIME_KEYS = ("device", "num_workers", "keep_checkpoint", "keep_model", "data_root", "progress", "download",
                "tag", "eval_every", "tensorboard")
#: The tag of a validation run (``validation > 0``) given none: its numbers are never test numbers.
VALIDATION_TAG = "validation"

#: Keys of the grid, set with their own options rather than ``--set``.
GRID_OPTIONS = {"method": "--methods", "dataset": "--datasets", "bits": "--bits", "seed": "--seeds"}


@dataclass
class RunConfig:
    """Every value a run uses; the record stores all of it."""

    method: str
    dataset: str
    bits: int
    seed: int = 0
    # A name for a variant grid (e.g. "equal-head"): its runs are stored and reported apart.
    tag: str | None = None
    # data and protocol
    data_root: str | None = None
    split_seed: int = 0
    topk: int | None = None  # None: the protocol's K
    # Hold out this many training items (seeded by split_seed) as validation queries, searched
    # against the database without them; the test queries are not touched. Recipe lengths
    # and other choices are made on these numbers, never on the test queries.
    validation: int = 0
    skip_corrupt: bool = False  # list files: leave out (and count) unreadable images instead of failing
    download: bool = False  # CIFAR-10: fetch torchvision's files into <data root>/cifar10 when missing
    # model
    backbone: str = "resnet50"
    weights: str | None = "DEFAULT"  # torchvision weights name; None: random init
    weights_path: str | None = None  # a local state dict instead
    image_size: int | None = None  # None: the size the weights were trained at
    frozen_backbone: bool = False
    augment: str = "flip"  # train-time augmentation (hashbench.data.images.AUGMENTATIONS)
    # Cached features are centred and scaled with the training split's statistics: linear
    # heads on raw post-ReLU features (large common offset) train badly, DPSH diverges.
    standardize_features: bool = True
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    backbone_lr_mult: float = 1.0
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    batch_size: int = 64
    epochs: int = 50
    scheduler: str = "none"
    lr_step: int = 0  # epochs between decays for scheduler=step
    lr_gamma: float = 0.1
    # runtime (not part of the fingerprint)
    device: str = "auto"
    num_workers: int = 2
    keep_checkpoint: bool = False
    # Keep the trained hash function of a finished run as model.pt (hashbench.deploy.model).
    keep_model: bool = True
    progress: bool = True
    # Write per-step loss terms, per-epoch lr and throughput and the final metrics to <run>/tb/
    # (needs the tensorboard package); the record's history stays what the report reads.
    tensorboard: bool = False
    # Every N epochs record the validation mAP in the history (needs validation > 0): one
    # run gives the whole curve, and epoch E of it equals a run of E epochs (same schedule).
    eval_every: int = 0
    # the method's own hyperparameters
    hparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.validation and self.tag is None:  # validation numbers never land among test numbers
            self.tag = VALIDATION_TAG

    def validate(self) -> RunConfig:
        for key in CONFIG_KEYS:  # every key its declared type first, whoever built the config
            setattr(self, key, coerce_value(key, getattr(self, key)))
        check_bits(self.bits)
        check_int("seed", self.seed, 0)
        check_int("split_seed", self.split_seed, 0)
        check_int("validation", self.validation, 0)
        check_int("eval_every", self.eval_every, 0)
        if self.eval_every and not self.validation:
            raise HashbenchError("eval_every needs validation > 0 (held-out training items): a per-epoch mAP on "
                                 "the test queries invites choosing the epoch on them")
        if self.topk is not None:
            check_int("topk", self.topk, 1)
        if self.tag is not None and (not isinstance(self.tag, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", self.tag)):
            raise HashbenchError(f"tag must be letters, digits, '.', '_' or '-'; got {self.tag!r}")
        check_choice("augment", self.augment, AUGMENTATIONS)
        if self.image_size is not None:
            check_int("image_size", self.image_size, 8, 1024)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive_float("lr", self.lr)
        check_positive_float("backbone_lr_mult", self.backbone_lr_mult, allow_zero=True)
        check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        check_positive_float("momentum", self.momentum, allow_zero=True)
        check_int("batch_size", self.batch_size, 2, 1 << 16)
        check_int("epochs", self.epochs, 1, 100_000)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.scheduler == "step":
            check_int("lr_step", self.lr_step, 1)
        check_positive_float("lr_gamma", self.lr_gamma)
        check_choice("device", self.device, DEVICES)
        check_int("num_workers", self.num_workers, 0, 64)
        return self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def folder(self, results_root: str | Path) -> Path:
        """This run's folder in the results store."""
        return run_dir(results_root, display_name(self.dataset), self.method, self.bits, self.seed, self.tag)

    def fingerprint(self) -> str:
        """Digest of everything that shapes the trained model (runtime keys excluded)."""
        return config_fingerprint(self.as_dict())


#: Keys added after records of schema 2 were published, with the value under which they
#: change nothing: left out of the fingerprint at that value, so older records still match.
NEUTRAL_VALUES = {"validation": 0}


def config_fingerprint(values: dict[str, Any]) -> str:
    """:meth:`RunConfig.fingerprint` of a config dict (as a record stores it)."""
    shaping = {k: v for k, v in values.items()
               if k not in RUNTIME_KEYS and not (k in NEUTRAL_VALUES and v == NEUTRAL_VALUES[k])}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in ("method", "dataset", "bits", "seed",
                                                                                     "hparams"))


def parse_value(text: str) -> Any:
    """``--set`` values: none/null, true/false, int, float, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HashbenchError(f"--set takes key=value; got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


#: What each kind of config value must be, in error messages.
_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@functools.cache
def config_kinds() -> dict[str, tuple[type, bool]]:
    """Each config key's declared type (one of bool, int, float, str) and whether it may be
    None, read off :class:`RunConfig`'s annotations: a key whose default is None has a type too."""
    hints = typing.get_type_hints(RunConfig)
    kinds = {}
    for key in CONFIG_KEYS:
        options = typing.get_args(hints[key]) or (hints[key],)
        kinds[key] = (next(t for t in options if t is not type(None)), type(None) in options)
    return kinds


def coerce_value(key: str, value: Any) -> Any:
    """A config key's value as its declared type (:func:`config_kinds`: an integral float for
    an int key, an int for a float key), or a one-line error saying what it must be: a string
    where a number is expected (``image_size = "64"`` in a file) never reaches a run."""
    kind, optional = config_kinds()[key]
    if value is None and optional:
        return None
    what = _KIND_NAMES[kind] + (" or none" if optional else "")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is float and number and math.isfinite(value):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise HashbenchError(f"{key} must be {what}; got {value!r}")


def method_layers(method_cls: Any, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """The method's settings for ``dataset``: every ``dataset_defaults`` entry whose
    pattern matches the dataset's name, as (pattern, values), in declaration order."""
    dataset = split_display_name(dataset)[1]  # what the data is, not what it is called
    return [(pattern, values) for pattern, values in method_cls.dataset_defaults.items()
            if fnmatch.fnmatch(dataset, pattern)]


def unknown_key_message(key: str, method: str, hparams: list[str]) -> str:
    if key in GRID_OPTIONS:
        return f"{key} is a grid option: use {GRID_OPTIONS[key]} instead of --set {key}=..."
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
        """Where ``key``'s value came from, e.g. ``file [grid main] [set]``."""
        return " ".join(filter(None, [self.name, self.tables.get(key)]))

    def locate(self, key: str, message: str) -> str:
        """``message`` about ``key``, prefixed with the file and table (unchanged if not from a file)."""
        if self.file is None:
            return message
        table = self.tables.get(key) or ""
        method, sep, rest = message.partition(": ")
        if sep and table.endswith(f"[method.{method}]"):  # "[method.mlh] mlh: alpha ..." would say mlh twice
            message = rest
        return f"{self.file}: {table + ' ' if table else ''}{message}"


def resolve_config(**arguments: Any) -> RunConfig:
    """Merge defaults and user values into a validated :class:`RunConfig` (config keys and
    the method's hyperparameters both checked, with one-line errors); the keyword arguments
    of :func:`resolve_with_sources`, without the sources."""
    return resolve_with_sources(**arguments)[0]


def resolve_with_sources(
    *,
    method: str,
    method_cls: Any,
    dataset: str,
    dataset_defaults: dict[str, Any],
    bits: int,
    seed: int,
    overrides: dict[str, Any],
    file: Layer | None = None,
) -> tuple[RunConfig, dict[str, str]]:
    """:func:`resolve_config`, and for every config key and ``hparams.<name>`` the label of
    the layer that set its value. ``file`` (a config file's values) sits below ``overrides``
    (the command line's)."""
    base = RunConfig(method=method, dataset=dataset, bits=bits, seed=seed)
    values = {k: getattr(base, k) for k in CONFIG_KEYS}
    hparams = dict(method_cls.defaults)
    sources = {**dict.fromkeys(values, RUNNER_DEFAULT),
               **dict.fromkeys((f"hparams.{k}" for k in hparams), METHOD_DEFAULT)}
    users = [layer for layer in (file, Layer("command line", dict(overrides))) if layer is not None]
    owner = {key: layer for layer in users for key in layer.values}
    if "backbone" in owner and not {"weights", "weights_path"} & set(owner):
        # a dataset's default weights belong to its default backbone
        layer = owner["backbone"]
        users[users.index(layer)] = dataclasses.replace(
            layer, values={**layer.values, "weights": "DEFAULT"},
            tables={**layer.tables, **({"weights": layer.tables["backbone"]} if "backbone" in layer.tables else {})})
    layers = [Layer(METHOD_RECIPE, method_cls.train_defaults), Layer(DATASET, dataset_defaults),
              *[Layer(f"{METHOD_RECIPE} for {pattern}", values)
                for pattern, values in method_layers(method_cls, dataset)]]
    frozen, frozen_layer = False, None
    for layer in [*layers, *users]:
        if "frozen_backbone" in layer.values:
            frozen, frozen_layer = layer.values["frozen_backbone"], layer
    if method_cls.closed_form and not frozen:
        message = (f"{method} is fitted in closed form on fixed features and cannot fine-tune a backbone; "
                   "drop --fine-tune (or frozen_backbone=false)")
        raise HashbenchError(frozen_layer.locate("frozen_backbone", message) if frozen_layer else message)
    if frozen:
        layers.append(Layer(FROZEN_RECIPE, method_cls.frozen_train_defaults))
    for layer in [*layers, *users]:
        for key, value in layer.values.items():
            if key in values:
                try:
                    values[key] = coerce_value(key, value)
                except HashbenchError as err:
                    raise HashbenchError(layer.locate(key, str(err))) from None
                sources[key] = layer.source(key)
            elif key in hparams:
                hparams[key] = value
                sources[f"hparams.{key}"] = layer.source(key)
            else:
                raise HashbenchError(layer.locate(key, unknown_key_message(key, method, list(hparams))))
    try:
        hparams = method_cls.check_params(hparams)
        config = RunConfig(method=method, dataset=dataset, bits=bits, seed=seed, hparams=hparams, **values).validate()
    except HashbenchError as err:
        if file is None:
            raise
        raise HashbenchError(_locate(str(err), method, users)) from None
    if sources["tag"] == RUNNER_DEFAULT and config.tag == VALIDATION_TAG:
        sources["tag"] = f"{RUNNER_DEFAULT} (validation > 0)"
    return config, sources


def _locate(message: str, method: str, users: list[Layer]) -> str:
    """A validation error prefixed with the file and table of the value it is about, when a
    file gave that value last. Messages start with the key (``"<key> must be ..."``, or
    ``"<method>: <key> must be ..."`` for a hyperparameter; see :mod:`hashbench.validation`)."""
    lead = message.removeprefix(f"{method}: ")
    owner = {key: layer for layer in users for key in layer.values}
    for key in sorted(owner, key=len, reverse=True):  # "lr_step" before "lr"
        if lead.startswith(f"{key} "):
            return owner[key].locate(key, message)
    return message
