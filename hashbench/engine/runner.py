"""The one training loop, shared by every method.

``execute`` runs one configuration into its folder of the results store, in four steps:
``build`` (backbone, features or images, method, optimizer; resume from a checkpoint
when there is one), ``fit`` (the configured epochs; the last epoch is reported: selecting
an epoch on the queries would leak test data), ``evaluate`` (encode queries and database,
every metric, the codes saved) and ``make_record`` (one builder for finished and failed
runs), written atomically. Any failure of a run is recorded, not raised, so a grid (run by
the CLI here or as submitit jobs, ``launch.py``) goes on.

Determinism: the batch order and augmentation of epoch e come from generators seeded by
(seed, e) alone, so a run resumed at an epoch boundary replays exactly the batches an
uninterrupted run would see; on the CPU the result is bit-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hashbench.config import RunConfig
from hashbench.data.datasets import HashingDataset, display_name
from hashbench.data.images import ImageTransform, iterate_batches
from hashbench.deploy.model import MODEL, artifact_payload, save_artifact, stored_image_size
from hashbench.engine.checkpoint import load_checkpoint, save_checkpoint
from hashbench.engine.claims import CLAIM, Claim
from hashbench.engine.distributed import World, broadcast, gather_rows, gather_with_grad, world
from hashbench.engine.features import cached_features
from hashbench.engine.optim import build_optimizer, build_scheduler, optimizer_step
from hashbench.engine.progress import progress
from hashbench.engine.tracking import Tracker, make_tracker
from hashbench.eval import mean_average_precision, record_metrics
from hashbench.method import HashMethod, create_method
from hashbench.models.backbones import Backbone, build_backbone
from hashbench.registry import METHODS
from hashbench.results import (
    CHECKPOINT,
    LOG,
    DamagedRecordError,
    Record,
    archive_previous,
    read_record,
    save_codes,
    versions,
    write_record,
)
from hashbench.storage import remove_orphan_temporaries
from hashbench.validation import DegenerateCodesError, HashbenchError, NonFiniteLossError, NonFiniteOutputError

EVAL_BATCH = 256


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HashbenchError("device must be auto or cpu here: no CUDA device is available; got 'cuda'")
    return torch.device(name)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _float_tensors(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a method's output: a tensor, or a dataclass, dict, list or tuple of them."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _float_tensors(getattr(value, item.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _float_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _float_tensors(item)


def all_finite(value: Any) -> bool:
    """Whether every floating-point tensor in ``value`` holds finite numbers only (one device sync)."""
    flags = [torch.isfinite(tensor).all() for tensor in _float_tensors(value)]
    return not flags or bool(torch.stack(flags).all())


class Encoder(nn.Module):
    """Inputs -> features: images through the backbone, or rows of cached features."""

    def __init__(self, backbone: Backbone, transform: ImageTransform, source: Any, *, frozen: bool,
                 device: torch.device, num_workers: int) -> None:
        super().__init__()
        self.backbone = None if frozen else backbone.module
        self.transform = transform
        self.source = source  # an image store, or a (N, D) feature tensor when frozen
        self.device = device
        self.num_workers = num_workers
        if self.backbone is not None:  # channels_last: faster convolutions on CPUs (~1.8x here) and GPUs
            self.backbone.to(memory_format=torch.channels_last)

    def batches(self, indices: np.ndarray, *, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False, shard: tuple[int, int] = (0, 1)
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iterate_batches(self.source, indices, batch_size=batch_size, device=self.device, shuffle=shuffle,
                               generator=generator, num_workers=self.num_workers, drop_last=drop_last, shard=shard)

    def features(self, inputs: torch.Tensor, *, train: bool, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        if self.backbone is None:
            return inputs
        x = self.transform(inputs, train=train, generator=generator).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            return self.backbone(x).float()


class Model(nn.Module):
    """Encoder and method as one module, so DDP sees every trainable parameter."""

    def __init__(self, encoder: Encoder, method: HashMethod) -> None:
        super().__init__()
        self.encoder = encoder
        self.method = method

    def forward(self, inputs: torch.Tensor, generator: torch.Generator) -> Any:
        return self.method(self.encoder.features(inputs, train=True, generator=generator))


@torch.no_grad()
def encode(encoder: Encoder, method: HashMethod, indices: np.ndarray, ranks: World, *, desc: str = "encode",
           show_progress: bool = False) -> np.ndarray:
    """Binary codes (bool, (N, bits)) of the items at ``indices``; with several ranks each
    encodes every N-th batch item and the codes are gathered. Continuous codes that are not
    finite are an error (``NaN >= 0`` would quietly give a bit), found alike on every rank:
    each row carries its finiteness through the gathering."""
    encoder.eval()
    method.eval()
    out, where = [], []
    bar = progress(len(indices), desc=desc, unit="img", enabled=show_progress and ranks.is_main)
    for inputs, positions in encoder.batches(indices, batch_size=EVAL_BATCH, shard=(ranks.rank, ranks.size)):
        codes = method.codes(method(encoder.features(inputs, train=False)))
        out.append(torch.cat([codes >= 0, torch.isfinite(codes).all(1, keepdim=True)], 1).cpu())
        where.append(positions)
        bar.update(len(positions) * ranks.size)
    bar.close()
    rows = torch.cat(out).numpy()
    if ranks.active:
        rows = gather_rows(rows, torch.cat(where).numpy(), len(indices))
    if not rows[:, -1].all():
        raise NonFiniteOutputError(f"non-finite model output for {int((~rows[:, -1]).sum())} of {len(rows)} "
                                   f"items ({desc})")
    return np.ascontiguousarray(rows[:, :-1])


class RunLog:
    """Lines go to ``log.txt`` in the run folder (appended, so a resumed run keeps its past)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOG

    def __call__(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.path.open("a") as handle:
            handle.write(f"{stamp} {message}\n")


#: The backbone block's ``augment`` of a frozen run: cached features are extracted once, never augmented.
FROZEN_AUGMENT = "none (frozen features)"


def applied_augment(config: RunConfig) -> str:
    """The augmentation a run's training images got: its recipe when fine-tuned, none when
    frozen (the config keeps the recipe's value, so its fingerprint stays as it is)."""
    return FROZEN_AUGMENT if config.frozen_backbone else config.augment


def map_label(config: RunConfig, topk: int) -> str:
    """How a run's mAP is named in the console and the log: a validation run's queries are
    held-out training items, and its number is no test mAP."""
    return f"validation mAP@{topk} (held-out training items)" if config.validation else f"mAP@{topk}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class TrainingRun:
    """Everything one run is made of, built once from its config by :func:`build`."""

    config: RunConfig
    folder: Path
    dataset: HashingDataset
    ranks: World
    device: torch.device
    backbone: Backbone
    transform: ImageTransform
    encoder: Encoder
    method: HashMethod
    optimizer: torch.optim.Optimizer | None  # None for a method fitted in closed form
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    train_labels: torch.Tensor | None  # None for a label-free method: it never sees labels
    log: Callable[[str], None]
    model: nn.Module
    timing: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    images_seen: int = 0
    tracker: Tracker = field(default_factory=Tracker)  # TensorBoard with tensorboard=true, else a no-op
    # frozen runs: the standardisation of the cached features, (mean, std + 1e-6), kept with the model
    feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None
    data_digest: str | None = None  # of the dataset as loaded, before any validation holdout (data_digest)


def build(config: RunConfig, folder: Path, dataset: HashingDataset) -> TrainingRun:
    """Backbone, inputs (cached features or images), method, optimizer and scheduler;
    restored from the run's checkpoint when there is one."""
    ranks = world()
    log = RunLog(folder) if ranks.is_main else (lambda message: None)
    timing: dict[str, Any] = {"started_at": _now(), "features_s": 0.0}
    protocol_dataset = dataset  # the feature cache is keyed by the protocol's items, validation or not
    if config.validation:
        dataset = dataset.holdout(config.validation)
    device = resolve_device(config.device)
    if ranks.active and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
    torch.manual_seed(config.seed)
    backbone = build_backbone(config.backbone, config.weights, config.weights_path)
    transform = ImageTransform(config.image_size or backbone.image_size, backbone.mean, backbone.std, config.augment)
    if ranks.is_main:
        log(f"{config.method} on {display_name(config.dataset)}, {config.bits} bits, seed {config.seed}: backbone "
            f"{config.backbone} ({backbone.weights_label}), {transform.image_size} px, "
            f"{'frozen' if config.frozen_backbone else 'fine-tuned'}, augment {applied_augment(config)}")
    feature_stats = None
    if config.frozen_backbone:
        t0 = time.perf_counter()
        source, from_cache = cached_features(protocol_dataset, config.backbone, backbone, transform, device=device,
                                             num_workers=config.num_workers, progress=config.progress)
        if not bool(torch.isfinite(source).all()):
            bad = int((~torch.isfinite(source).all(1)).sum())
            raise NonFiniteOutputError(f"non-finite backbone features for {bad} of {len(source)} items "
                                       f"({'from the feature cache' if from_cache else 'just extracted'})")
        if config.standardize_features:
            train_rows = source[torch.as_tensor(dataset.split.train)]
            feature_stats = (train_rows.mean(0), train_rows.std(0) + 1e-6)
            source = (source - feature_stats[0]) / feature_stats[1]
        source = source.to(device)
        timing.update(features_s=time.perf_counter() - t0, features_cached=from_cache)
    else:
        source = dataset.images
    encoder = Encoder(backbone, transform, source, frozen=config.frozen_backbone, device=device,
                      num_workers=config.num_workers).to(device)
    split = dataset.split
    torch.manual_seed(config.seed)  # the head's init must not depend on whether features came from the cache
    method = create_method(config.method, feature_dim=backbone.feature_dim, bits=config.bits,
                           num_classes=dataset.num_classes, num_train=len(split.train), seed=config.seed,
                           **config.hparams).to(device)
    train_labels = dataset.labels[torch.as_tensor(split.train)].to(device) if method.supervised else None
    method.on_fit_start(train_labels)
    optimizer = None if method.closed_form else build_optimizer(config, method, encoder.backbone)
    scheduler = None if optimizer is None else build_scheduler(config, optimizer)
    run = TrainingRun(config=config, folder=folder, dataset=dataset, ranks=ranks, device=device, backbone=backbone,
                      transform=transform, encoder=encoder, method=method, optimizer=optimizer, scheduler=scheduler,
                      train_labels=train_labels, log=log, model=Model(encoder, method), timing=timing,
                      feature_stats=feature_stats, data_digest=protocol_dataset.digest())
    checkpoint = folder / CHECKPOINT
    if checkpoint.exists() and not method.closed_form:  # a closed-form fit takes no checkpoint
        state = load_checkpoint(checkpoint, config.fingerprint())
        encoder.load_state_dict(state["encoder"])
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.start_epoch, run.step, run.history = state["epoch"], state["step"], state["history"]
        log(f"resumed from {checkpoint} at epoch {run.start_epoch}")
    if ranks.active and not method.closed_form:  # method state is updated alike on every rank: no buffer broadcast
        ddp = torch.nn.parallel.DistributedDataParallel
        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                          else {"broadcast_buffers": False})
        run.model = ddp(run.model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)
    log(f"config {config.as_dict()}")
    run.tracker = make_tracker(config.tensorboard, folder, is_main=ranks.is_main)
    return run


def _train_epoch(run: TrainingRun, epoch: int) -> dict[str, float]:
    """One epoch of optimizer steps; the mean of each loss term over its batches."""
    config, method = run.config, run.method
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    torch.manual_seed(_epoch_seed(config.seed, epoch))
    run.encoder.train(not config.frozen_backbone)
    method.train()
    sums: dict[str, float] = {}
    batches = 0
    split = run.dataset.split
    drop_last = len(split.train) > config.batch_size  # a last batch of one would break BatchNorm
    for inputs, positions in run.encoder.batches(split.train, batch_size=config.batch_size, shuffle=True,
                                                 generator=generator, drop_last=drop_last,
                                                 shard=(run.ranks.rank, run.ranks.size)):
        method.on_step_start(run.step)
        output = run.model(inputs, generator)
        index = positions.to(run.device)
        if run.ranks.active:  # the loss sees the global batch (see hashbench.engine.distributed)
            output, index = gather_with_grad(output), gather_with_grad(index)
        if not all_finite(output):  # checked before the loss, which may fail on it in its own words
            raise NonFiniteOutputError(f"non-finite model output at step {run.step} (epoch {epoch})")
        labels = None if run.train_labels is None else run.train_labels[index]
        losses = method.loss(output, labels=labels, index=index, step=run.step)
        total = losses["loss"]
        if not torch.isfinite(total):
            raise NonFiniteLossError(f"non-finite loss {total.item()} at step {run.step} (epoch {epoch})")
        optimizer_step(run.optimizer, method, total, run.step)
        terms = {name: float(value.detach()) for name, value in losses.items()}
        run.tracker.step(run.step, terms)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value
        run.step += 1
        batches += 1
        run.images_seen += len(index)
    return {name: total / max(batches, 1) for name, total in sums.items()}


def fit_closed_form(run: TrainingRun) -> None:
    """One call of the method's ``fit`` on the training split's fixed features (every rank
    fits the same deterministic state); seconds in a fit take no checkpoint."""
    t0 = time.perf_counter()
    features = run.encoder.source[torch.as_tensor(run.dataset.split.train, device=run.encoder.source.device)]
    with torch.no_grad():
        run.method.fit(features, run.train_labels)
    seconds = time.perf_counter() - t0
    run.history = [{"epoch": 1, "seconds": seconds}]
    run.log(f"fitted in closed form on {len(features)} training items in {seconds:.2f} s")
    run.timing.update(train_s=seconds, train_images_per_s=len(features) / seconds if seconds > 0 else None)


def fit(run: TrainingRun) -> None:
    """Train from ``run.start_epoch`` to the configured epochs, a checkpoint after each
    (or fit a closed-form method once)."""
    config = run.config
    if run.method.closed_form:
        fit_closed_form(run)
        return
    train_s = 0.0
    bar = progress(config.epochs, desc=f"{config.method} {display_name(config.dataset)} {config.bits}b s{config.seed}",
                   unit="ep", initial=run.start_epoch, enabled=config.progress and run.ranks.is_main)
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        seen = run.images_seen
        lrs = [group["lr"] for group in run.optimizer.param_groups]  # the rates this epoch trained at
        means = _train_epoch(run, epoch)
        run.scheduler.step()
        seconds = time.perf_counter() - t0
        train_s += seconds
        entry = {"epoch": epoch + 1, "seconds": seconds, "lr": run.optimizer.param_groups[0]["lr"], **means}
        if config.eval_every and (epoch + 1) % config.eval_every == 0:
            entry["val_map"] = validation_map(run)
        run.history.append(entry)
        run.tracker.epoch(epoch + 1, {"lr": lrs[0], **({"lr_backbone": lrs[1]} if len(lrs) > 1 else {}),
                                      "images_per_s": (run.images_seen - seen) / seconds, "seconds": seconds,
                                      **{k: v for k, v in entry.items() if k not in ("epoch", "seconds", "lr")}})
        run.log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        if run.ranks.is_main:
            save_checkpoint(run.folder / CHECKPOINT, {
                "fingerprint": config.fingerprint(), "epoch": epoch + 1, "step": run.step, "history": run.history,
                "encoder": run.encoder.state_dict(), "method": run.method.state_dict(),
                "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            })
        bar.set_postfix(loss=f"{entry.get('loss', float('nan')):.4f}",
                        img_s=f"{run.images_seen / max(train_s, 1e-9):.0f}")
        bar.update(1)
    bar.close()
    run.timing.update(train_s=train_s, train_images_per_s=run.images_seen / train_s if train_s > 0 else None)


def encode_split(run: TrainingRun, *, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the run's queries and database under its current weights (every rank takes part)."""
    split = run.dataset.split
    return (encode(run.encoder, run.method, split.query, run.ranks, desc="encode queries", show_progress=show_progress),
            encode(run.encoder, run.method, split.database, run.ranks, desc="encode database",
                   show_progress=show_progress))


def relevance(run: TrainingRun) -> tuple[np.ndarray, np.ndarray, int]:
    """Query and database labels as booleans, and the mAP cut-off K of the run."""
    split, labels = run.dataset.split, run.dataset.labels.numpy() > 0
    return labels[split.query], labels[split.database], run.config.topk or run.dataset.topk or len(split.database)


def validation_map(run: TrainingRun) -> float | None:
    """mAP@K (ties: expected) of the run's queries, which for a run with ``validation`` are
    held-out training items (None on ranks other than 0)."""
    query_codes, db_codes = encode_split(run)
    if not run.ranks.is_main:
        return None
    query_labels, db_labels, topk = relevance(run)
    return mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    curves: dict[str, Any]
    codes: dict[str, Any]  # the record's artifacts.codes: file, bytes, sha256


def evaluate_run(run: TrainingRun) -> Evaluation | None:
    """Encode queries and database, compute every metric and save the codes (None on
    ranks other than 0). Both mAP figures are recorded: ``map@K`` with ties at equal
    Hamming distance broken by database index (the literature's figure) and
    ``map_expected@K``, its expectation over random orders within ties (independent of
    the database's order, the figure the report shows first)."""
    split = run.dataset.split
    t0 = time.perf_counter()
    # encoding cached features takes no time: no progress bar for it
    query_codes, db_codes = encode_split(run, show_progress=run.config.progress and not run.config.frozen_backbone)
    run.timing["encode_s"] = time.perf_counter() - t0
    if not run.ranks.is_main:
        return None
    if len(db_codes) > 1 and bool((db_codes == db_codes[0]).all()):
        raise DegenerateCodesError(f"degenerate codes: all {len(db_codes)} database items have the same code")
    query_labels, db_labels, topk = relevance(run)
    t0 = time.perf_counter()
    metrics, result = record_metrics(query_codes, db_codes, query_labels, db_labels, topk)
    run.timing["eval_s"] = time.perf_counter() - t0
    run.log(f"{map_label(run.config, topk)} = {metrics[f'map@{topk}']:.4f} (ties by index), "
            f"{metrics[f'map_expected@{topk}']:.4f} (expected over tie orders)")
    codes = save_codes(run.folder, query_codes=query_codes, database_codes=db_codes, query_labels=query_labels,
                       database_labels=db_labels, query_index=split.query, database_index=split.database,
                       train_index=split.train)
    return Evaluation(metrics, {"radius_precision": result.radius_precision, "radius_recall": result.radius_recall},
                      codes)


def make_record(config: RunConfig, *, status: str, reason: str | None = None, run: TrainingRun | None = None,
                evaluation: Evaluation | None = None, timing: dict[str, Any] | None = None) -> Record:
    """The run's record, for a finished (``done``) or a ``failed`` run alike."""
    method_cls = METHODS.get(config.method)
    record = Record(
        method=config.method, tag=config.tag, dataset=display_name(config.dataset), bits=config.bits, seed=config.seed,
        method_info={"ablation_of": method_cls.ablation_of, "supervised": method_cls.supervised,
                     "family": method_cls.family, "closed_form": method_cls.closed_form},
        config=config.as_dict(), fingerprint=config.fingerprint(), status=status, reason=reason, versions=versions(),
        timing={**(timing or {}), "finished_at": _now()})
    if run is not None:
        record.protocol = {**run.dataset.protocol(), "data_digest": run.data_digest}
        record.backbone = {"name": config.backbone, "weights": run.backbone.weights_label,
                           "image_size": run.transform.image_size, "frozen": config.frozen_backbone,
                           "feature_dim": run.backbone.feature_dim, "augment": applied_augment(config)}
        record.history, record.device, record.world_size = run.history, str(run.device), run.ranks.size
    if evaluation is not None:
        record.protocol["topk"] = evaluation.metrics["topk"]
        record.metrics, record.curves, record.artifacts = evaluation.metrics, evaluation.curves, {
            "codes": evaluation.codes}
    return record


@dataclass
class RunOutcome:
    config: RunConfig
    folder: Path
    status: str  # done | skipped | busy | failed
    record: dict[str, Any] | None = None
    reason: str | None = None


def _record_done(run: TrainingRun, evaluation: Evaluation) -> dict[str, Any]:
    """Keep the model (or drop an older one) and write the finished run's record."""
    config, folder = run.config, run.folder
    record = make_record(config, status="done", run=run, evaluation=evaluation, timing=run.timing)
    if config.keep_model:  # the trained hash function, for export and search (hashbench.deploy)
        payload = artifact_payload(config=config, backbone=run.backbone, transform=run.transform, method=run.method,
                                   num_classes=run.dataset.num_classes, num_train=len(run.dataset.split.train),
                                   feature_stats=run.feature_stats, input_size=stored_image_size(run.dataset))
        record.artifacts["model"] = save_artifact(folder, payload).as_dict()
    else:  # a model left by an earlier run of this folder is not this run's
        (folder / MODEL).unlink(missing_ok=True)
    write_record(folder, record)
    return record.as_dict()


def _train_and_record(config: RunConfig, folder: Path, dataset: HashingDataset) -> RunOutcome:
    """build -> fit -> evaluate -> record; any failure (writing the results included: a full
    disk) is recorded as ``failed`` with a one-line reason (the traceback of an unexpected
    error goes to ``log.txt``), or, when even that cannot be written, said in the reason."""
    ranks = world()
    run: TrainingRun | None = None
    record = None
    try:
        run = build(config, folder, dataset)
        fit(run)
        evaluation = evaluate_run(run)
        if evaluation is not None:
            run.tracker.final(run.step, evaluation.metrics)
            record = _record_done(run, evaluation)
    except Exception as err:  # a failed run must not stop the grid
        expected = isinstance(err, HashbenchError)
        first_line = (str(err).splitlines() or [""])[0]
        reason = first_line if expected else f"{type(err).__name__}: {first_line}"
        if ranks.is_main:
            try:
                log = RunLog(folder)
                log(f"failed: {reason}")
                if not expected:
                    log(traceback.format_exc())
                write_record(folder, make_record(config, status="failed", reason=reason, run=run,
                                                 timing=run.timing if run else None))
            except (OSError, HashbenchError) as unwritten:  # a full disk takes the failure's record too
                reason += f" (the failure could not be recorded: {(str(unwritten).splitlines() or [''])[0]})"
        return RunOutcome(config, folder, "failed", reason=reason)
    finally:
        if run is not None:
            run.tracker.close()
    if ranks.is_main and not config.keep_checkpoint:
        (folder / CHECKPOINT).unlink(missing_ok=True)
    return RunOutcome(config, folder, "done", record)


def _settled(config: RunConfig, folder: Path, force: bool) -> RunOutcome | None:
    """The outcome of a run its folder's record settles: done (``skipped``), or damaged
    (``failed``: it is never overwritten silently); None when the run is to train."""
    try:
        existing = read_record(folder)
    except DamagedRecordError as err:
        return None if force else RunOutcome(config, folder, "failed",
                                             reason=f"{err}; --force archives it and reruns the run")
    if existing is not None and existing.get("status") == "done" and not force:
        return RunOutcome(config, folder, "skipped", existing)
    return None


def execute(config: RunConfig, results_root: Path, dataset: HashingDataset, *, force: bool = False) -> RunOutcome:
    """Run one configuration unless its record says it is done (``force`` reruns it,
    archiving the old record and dropping any checkpoint), its record is damaged (``failed``
    unless ``force``) or another process holds its claim (status ``busy``). Temporary files
    that killed writes left in the folder are removed once the claim is held."""
    folder = config.folder(results_root)
    if (settled := _settled(config, folder, force)) is not None:
        return settled
    ranks = world()
    with Claim(folder) if ranks.is_main else contextlib.nullcontext() as claim:
        acquired = claim.acquired if ranks.is_main else None
        if ranks.active:
            acquired = broadcast(acquired)
        if not acquired:
            return RunOutcome(config, folder, "busy", reason=f"claimed by another process ({folder / CLAIM})")
        if (settled := _settled(config, folder, force)) is not None:  # it may have finished meanwhile
            return settled
        if ranks.is_main and claim.recovered:
            RunLog(folder)("recovered a stale claim left by a dead process")
        if ranks.is_main and (orphans := remove_orphan_temporaries(folder)):
            RunLog(folder)(f"removed temporary files of killed writes: {', '.join(p.name for p in orphans)}")
        if force and ranks.is_main:
            archive_previous(folder)
            with contextlib.suppress(FileNotFoundError):
                (folder / CHECKPOINT).unlink()
        if ranks.active:
            broadcast(None)  # the others wait until rank 0 has cleared the folder
        outcome = _train_and_record(config, folder, dataset)
        if ranks.active:
            outcome.record = broadcast(outcome.record)
        return outcome
