"""Frozen-backbone features, computed once and cached on disk.

The key covers everything that changes the features: the dataset's source (with its
content fingerprint) and size, the images' content, the backbone, its weights (a local
weights file by the sha256 of its content, so any path to the same file hits the cache;
randomly initialised weights by the digest of their values, which the run's seed sets), the
image size and the normalisation. A file whose key or checksum does not match is rebuilt,
never used.

Images' content: for a dataset read from files (list files, image folders) the key holds a
digest of the sha256 of every image file it uses, in item order (:func:`images_digest`), so an
image changed in place gets new features. Each file's sha256 is kept in a manifest under
``$HASHBENCH_CACHE`` by (path, size, mtime): a run reads only the files that are new or whose
size or mtime changed, and stats the others. Not detected: a file rewritten with another
content but the same size and the same mtime (restored by hand, or within the file system's
timestamp resolution of the first hashing). Images held in memory (digits, CIFAR-10) need no
such digest: the source's fingerprint (the tarball's or the folder's files' size and mtime)
covers them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from hashbench.data.datasets import HashingDataset
from hashbench.data.images import ImageTransform, iterate_batches
from hashbench.data.sources import cache_dir
from hashbench.engine.progress import progress as progress_bar
from hashbench.models.backbones import Backbone
from hashbench.storage import atomic_write, exclusive_lock, file_sha256
from hashbench.validation import HashbenchError

FEATURES_VERSION = 2  # bump when the transform or the extraction changes


def needed_items(dataset: HashingDataset) -> np.ndarray:
    """The images a protocol uses: train, query and database, each once, sorted."""
    split = dataset.split
    return np.unique(np.concatenate([split.train, split.query, split.database]))


def weights_identity(backbone: Backbone) -> str | None:
    """The weights in a feature key: a local file by its content; a torchvision name as
    recorded, so keys of existing caches stay the same; random initial weights by their values
    (each seed draws others: one seed's features are not another's), none for a backbone
    without parameters."""
    if backbone.weights_file is not None:
        return f"sha256:{file_sha256(backbone.weights_file)}"
    if backbone.weights is not None:
        return backbone.weights
    state = backbone.module.state_dict()
    if not state:
        return None
    digest = hashlib.sha256()
    for name, value in sorted(state.items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return f"random init sha256:{digest.hexdigest()}"


def images_digest(paths: list[Path]) -> str:
    """A digest of the files' contents in the given order: the sha256 of each, from the
    manifest of the files' common folder under the cache folder when its size and mtime are
    the recorded ones, else read again (and recorded)."""
    absolute = [os.path.abspath(path) for path in paths]
    folder = os.path.commonpath(absolute) if absolute else ""
    manifest = cache_dir() / f"file-sha256-{hashlib.sha256(folder.encode()).hexdigest()[:16]}.json"
    with exclusive_lock(manifest.with_suffix(".lock")):  # concurrent runs hash each file once
        try:
            known = json.loads(manifest.read_text())
        except (OSError, ValueError):  # absent or torn: hash again
            known = {}
        known = known if isinstance(known, dict) else {}
        digest, changed = hashlib.sha256(), False
        for path in absolute:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                raise HashbenchError(f"missing image file: {path}") from None
            entry = known.get(path)
            if not (isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]):
                entry = known[path] = [stat.st_size, stat.st_mtime_ns, file_sha256(Path(path))]
                changed = True
            digest.update(entry[2].encode())
        if changed:
            with atomic_write(manifest) as handle:
                json.dump(known, handle)
    return digest.hexdigest()[:16]


def feature_key(dataset: HashingDataset, backbone_name: str, backbone: Backbone, transform: ImageTransform) -> str:
    """The cache key of a dataset's features (see the module docstring); datasets held in
    memory keep the keys their caches were written under."""
    spec = {
        "version": FEATURES_VERSION,
        "source": dataset.source,
        "items": hashlib.sha256(needed_items(dataset).tobytes()).hexdigest()[:16],
        "backbone": backbone_name,
        "weights": weights_identity(backbone),
        "image_size": transform.image_size,
        "mean": list(transform.mean),
        "std": list(transform.std),
    }
    if dataset.image_files is not None:
        spec["images"] = images_digest([dataset.image_files[item] for item in needed_items(dataset)])
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def _checksum(features: torch.Tensor) -> str:
    return hashlib.sha256(features.numpy().tobytes()).hexdigest()


def _load_valid(path: Path, key: str) -> torch.Tensor | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        features = payload["features"]
        if payload["key"] == key and _checksum(features) == payload["sha256"]:
            return features
    except Exception:  # torn, truncated or foreign file: rebuild
        return None
    return None


def cached_features(
    dataset: HashingDataset,
    backbone_name: str,
    backbone: Backbone,
    transform: ImageTransform,
    *,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    folder: Path | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, bool]:
    """Features (CPU float32, (N, D), N = all images of the dataset; rows the protocol does
    not use stay zero) and whether they came from the cache. ``progress`` reports the
    extraction (images/s, ETA) on stderr."""
    key = feature_key(dataset, backbone_name, backbone, transform)
    path = (folder or cache_dir()) / f"features-{key}.pt"
    with exclusive_lock(path.with_suffix(".lock")):  # concurrent runs extract once; the others wait
        if path.exists() and (features := _load_valid(path, key)) is not None:
            return features, True
        module = backbone.module.to(device, memory_format=torch.channels_last).eval()
        items = needed_items(dataset)
        chunks = []
        bar = progress_bar(len(items), desc=f"features {backbone_name}", unit="img", enabled=progress)
        with (bar, torch.inference_mode(),
              torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")):
            for images, _ in iterate_batches(dataset.images, items, batch_size=batch_size, device=device,
                                             num_workers=num_workers):
                x = transform(images, train=False).contiguous(memory_format=torch.channels_last)
                chunks.append(module(x).float().cpu())
                bar.update(len(images))
        features = torch.zeros(len(dataset.labels), backbone.feature_dim)
        features[torch.as_tensor(items)] = torch.cat(chunks)
        with atomic_write(path, "wb") as handle:
            torch.save({"key": key, "sha256": _checksum(features), "features": features}, handle)
        return features, False
