"""What ``hashbench run`` checks before the first run starts: a mistake that would fail every
run (missing data, an impossible method setup, weights that do not load, a finished record
made under another config) stops the whole command in one line instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashbench.config import RUNTIME_KEYS, RunConfig, config_fingerprint, flat_config
from hashbench.data.check import screen_for_run
from hashbench.data.datasets import HashingDataset, display_name
from hashbench.engine.distributed import World
from hashbench.engine.launch import load_run_dataset
from hashbench.engine.tracking import require_tensorboard
from hashbench.models.backbones import build_backbone
from hashbench.registry import METHODS
from hashbench.results import DamagedRecordError, read_record
from hashbench.validation import HashbenchError


def data_key(config: RunConfig) -> tuple[Any, ...]:
    """What decides how a dataset is loaded (runs that agree on it share one load)."""
    return (config.dataset, config.data_root, config.split_seed, config.skip_corrupt, config.download,
            config.allow_outside_root)


def describe_setup(config: RunConfig, weights: str, image_size: int) -> str:
    """What a run trains with, as its record will state it: ``weights`` (the label) and
    ``image_size`` are those of the backbone its config builds."""
    mode = ("frozen backbone (cached features, no augmentation)" if config.frozen_backbone
            else f"fine-tuned, augment {config.augment}")
    return (f"{display_name(config.dataset)}: backbone {config.backbone} ({weights}), "
            f"{config.image_size or image_size} px, {mode}")


def refuse_other_config(config: RunConfig, root: Path, digest: str) -> None:
    """A finished record made with another config, or on other data (``digest``, the
    :meth:`~hashbench.data.datasets.HashingDataset.digest` of the dataset now), is never reused or
    replaced silently. A damaged record is left to the run, which reports it."""
    try:
        record = read_record(config.folder(root))
    except DamagedRecordError:
        return
    if record is None or record.get("status") != "done" or "config" not in record:
        return
    stored_digest = (record.get("protocol") or {}).get("data_digest")
    if stored_digest is not None and stored_digest != digest:
        raise HashbenchError(f"{config.folder(root)} holds a finished run made on other data (data: {stored_digest} "
                             f"-> {digest}: the dataset's labels, split or lists changed); --force replaces it "
                             "(the old record is archived), or use another --results")
    if record.get("fingerprint", config_fingerprint(record["config"])) == config.fingerprint():
        return
    wanted, stored = flat_config(config.as_dict()), flat_config(record["config"])
    changed = [k for k in sorted(wanted) if k not in RUNTIME_KEYS and stored.get(k) != wanted[k]]
    detail = ", ".join(f"{k} {stored.get(k)!r} -> {wanted[k]!r}" for k in changed[:3]) or "an older schema"
    raise HashbenchError(f"{config.folder(root)} holds a finished run made with another config ({detail}); "
                         "--force replaces it (the old record is archived), or use --set tag=NAME or another --results")


@dataclass
class Ready:
    """What the checks leave for the runs: the loaded datasets by :func:`data_key`, and one line
    per distinct setup (:func:`describe_setup`)."""

    datasets: dict[tuple[Any, ...], HashingDataset]
    setups: list[str]


def preflight(jobs: list[RunConfig], root: Path, *, force: bool, ranks: World, warn: Callable[[str], None]) -> Ready:
    """Check every run of a command before any trains. Data no run means anything on is refused;
    what is only suspect is passed to ``warn`` once per dataset."""
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
        if config.validation:  # too many held-out items is an error of the command, not of each run
            loaded[key].holdout(config.validation)
    if not force:
        digests = {key: dataset.digest() for key, dataset in loaded.items()}
        for config in jobs:
            refuse_other_config(config, root, digests[data_key(config)])
    # Unknown names, missing or ill-fitting weights are errors of the whole command, not of every run.
    built = {}  # what each backbone's record will state: its weights and image size
    for setup in sorted({(c.backbone, c.weights, c.weights_path) for c in jobs}, key=str):
        backbone = build_backbone(*setup)
        built[setup] = (backbone.weights_label, backbone.image_size)
    setups = [describe_setup(c, *built[(c.backbone, c.weights, c.weights_path)]) for c in jobs]
    return Ready(loaded, list(dict.fromkeys(setups)))
