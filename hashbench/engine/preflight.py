"""What ``hashbench run`` checks before the first run starts: a mistake that would fail every
run (missing data, an impossible method setup, weights that do not load, a finished record
made under another config) stops the whole command in one line instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashbench.config import RUNTIME_KEYS, RunConfig, config_fingerprint, flat_config
from hashbench.data.check import screen_for_run
from hashbench.data.datasets import HashingDataset
from hashbench.engine.distributed import World
from hashbench.engine.launch import load_run_dataset
from hashbench.engine.tracking import require_tensorboard
from hashbench.models.backbones import build_backbone
from hashbench.registry import METHODS
from hashbench.results import read_record
from hashbench.validation import HashbenchError


def data_key(config: RunConfig) -> tuple[Any, ...]:
    """What decides how a dataset is loaded (runs that agree on it share one load)."""
    return (config.dataset, config.data_root, config.split_seed, config.skip_corrupt, config.download,
            config.allow_outside_root)


def describe_setup(config: RunConfig) -> str:
    """The line each dataset's runs are announced with: backbone, weights, image size, mode."""
    size = f"{config.image_size} px" if config.image_size else "the weights' image size"
    mode = "frozen backbone (cached features)" if config.frozen_backbone else f"fine-tuned, augment {config.augment}"
    weights = config.weights_path or config.weights or "random init"
    return f"{config.dataset}: backbone {config.backbone} ({weights}), {size}, {mode}"


def refuse_other_config(config: RunConfig, root: Path) -> None:
    """A finished record made with another config is never reused or replaced silently."""
    record = read_record(config.folder(root))
    if record is None or record.get("status") != "done" or "config" not in record:
        return
    if record.get("fingerprint", config_fingerprint(record["config"])) == config.fingerprint():
        return
    wanted, stored = flat_config(config.as_dict()), flat_config(record["config"])
    changed = [k for k in sorted(wanted) if k not in RUNTIME_KEYS and stored.get(k) != wanted[k]]
    detail = ", ".join(f"{k} {stored.get(k)!r} -> {wanted[k]!r}" for k in changed[:3]) or "an older schema"
    raise HashbenchError(f"{config.folder(root)} holds a finished run made with another config ({detail}); "
                         "--force replaces it (the old record is archived), or use --set tag=NAME or another --results")


def preflight(jobs: list[RunConfig], root: Path, *, force: bool, ranks: World, warn: Callable[[str], None]
              ) -> dict[tuple[Any, ...], HashingDataset]:
    """Check every run of a command before any trains; return the loaded datasets by
    :func:`data_key`. Data no run means anything on is refused; what is only suspect is passed
    to ``warn`` once per dataset."""
    if any(config.tensorboard for config in jobs):
        require_tensorboard()
    for config in jobs:  # each rank trains on an equal share of every batch
        if config.batch_size % ranks.size:
            raise HashbenchError(f"batch_size must be a multiple of the {ranks.size} processes; "
                                 f"got {config.batch_size}")
    loaded: dict[tuple[Any, ...], HashingDataset] = {}
    screened: set[tuple[Any, ...]] = set()  # (data key, supervised): a supervised method needs training labels
    for config in jobs:  # labels and split only: missing data fails here
        key = data_key(config)
        method = METHODS.get(config.method)
        if key not in loaded:
            loaded[key] = load_run_dataset(config)
            for warning in loaded[key].warnings:
                warn(f"warning: {loaded[key].name}: {warning}")
        elif (*key, method.supervised) not in screened:
            screen_for_run(loaded[key], supervised=method.supervised)
        screened.add((*key, method.supervised))
        method.check_setup(bits=config.bits, num_classes=loaded[key].num_classes, params=config.hparams)
    if not force:
        for config in jobs:
            refuse_other_config(config, root)
    # Unknown names, missing or ill-fitting weights are errors of the whole command, not of every run.
    for backbone, weights, weights_path in sorted({(c.backbone, c.weights, c.weights_path) for c in jobs}, key=str):
        build_backbone(backbone, weights, weights_path)
    return loaded
