"""One run's configuration, resolved in one place.

Precedence, lowest first: :class:`RunConfig`'s defaults < the method's ``train_defaults``
(its reference recipe) < the dataset's ``defaults`` (e.g. ``digits`` picks a small CNN
trained from scratch, which wants its own step size) < ``frozen_train_defaults`` of the
method when ``frozen_backbone`` is on < the user's options (CLI flags and ``--set``).
The CLI drops options the user did not give, so only given values override. Keys that are not fields of
:class:`RunConfig` are the method's hyperparameters and must appear in its ``defaults``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

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
RUNTIME_KEYS = ("device", "num_workers", "keep_checkpoint", "data_root", "progress", "download")


@dataclass
class RunConfig:
    """Every value a run uses; the record stores all of it."""

    method: str
    dataset: str
    bits: int
    seed: int = 0
    # data and protocol
    data_root: str | None = None
    split_seed: int = 0
    topk: int | None = None  # None: the protocol's K
    skip_corrupt: bool = False  # list files: leave out (and count) unreadable images instead of failing
    download: bool = False  # CIFAR-10: fetch torchvision's files into <data root>/cifar10 when missing
    ties: str = "index"
    # model
    backbone: str = "resnet50"
    weights: str | None = "DEFAULT"  # torchvision weights name; None: random init
    weights_path: str | None = None  # a local state dict instead
    image_size: int | None = None  # None: the size the weights were trained at
    frozen_backbone: bool = False
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
    progress: bool = True
    # the method's own hyperparameters
    hparams: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        check_bits(self.bits)
        check_int("seed", self.seed, 0)
        check_int("split_seed", self.split_seed, 0)
        if self.topk is not None:
            check_int("topk", self.topk, 1)
        check_choice("ties", self.ties, ("index", "expected", "random"))
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

    def fingerprint(self) -> str:
        """Digest of everything that shapes the trained model (runtime keys excluded)."""
        values = {k: v for k, v in self.as_dict().items() if k not in RUNTIME_KEYS}
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def _coerce(key: str, value: Any, like: Any) -> Any:
    """Give a user value the type of the default it replaces (ints for float keys, etc.)."""
    if value is None or like is None:
        return value
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise HashbenchError(f"{key} must be true or false; got {value!r}")
        return value
    if isinstance(like, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(like, (int, float)) and not isinstance(value, (int, float)):
        raise HashbenchError(f"{key} must be a number; got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise HashbenchError(f"{key} must be finite; got {value!r}")
    return value


def resolve_config(
    *,
    method: str,
    method_cls: Any,
    dataset: str,
    dataset_defaults: dict[str, Any],
    bits: int,
    seed: int,
    overrides: dict[str, Any],
) -> RunConfig:
    """Merge defaults and user values into a validated :class:`RunConfig`."""
    base = RunConfig(method=method, dataset=dataset, bits=bits, seed=seed)
    values = {k: getattr(base, k) for k in CONFIG_KEYS}
    hparams = dict(method_cls.defaults)
    user = dict(overrides)
    frozen = user.get("frozen_backbone", dataset_defaults.get("frozen_backbone", False))
    layers = [method_cls.train_defaults, dataset_defaults]
    if frozen:
        layers.append(getattr(method_cls, "frozen_train_defaults", {}))
    for layer in [*layers, user]:
        for key, value in layer.items():
            if key in values:
                values[key] = _coerce(key, value, getattr(base, key))
            elif key in hparams:
                hparams[key] = _coerce(key, value, hparams[key])
            else:
                known = ", ".join(sorted([*CONFIG_KEYS, *hparams]))
                raise HashbenchError(f"unknown config key {key!r} for method {method} (known: {known})")
    return RunConfig(method=method, dataset=dataset, bits=bits, seed=seed, hparams=hparams, **values).validate()
