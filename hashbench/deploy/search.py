"""``hashbench search``: the database neighbours of query images, with a run's own model.

Queries are image files (decoded by :func:`hashbench.data.images.decode_rgb`, resized to
the side the run's images were stored at, as training saw them) or items of the run's
dataset by index (its config: dataset, data root, split seed). An item index counts every
item of the dataset, whatever its role, in the dataset's order: for list files the lines of
``train.txt``, then ``test.txt``, then ``database.txt``; for an image folder its files sorted
by path (``test/`` before ``train/``); the indices results name. An item query is printed with its file (list
files, image folders) and its labels. They are encoded by the
run's kept model and searched against its saved database codes; results come ordered by
Hamming distance, then database index (:mod:`hashbench.deploy.index`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashbench.data.datasets import HashingDataset, LoadOptions, load_dataset
from hashbench.data.images import FileImages, TensorImages, decode_image, decode_rgb
from hashbench.deploy.index import BinaryIndex
from hashbench.deploy.model import HashModel, load_model
from hashbench.results import load_codes, read_record
from hashbench.validation import HashbenchError


def run_dataset(record: dict[str, Any]) -> HashingDataset:
    """The dataset of a run, as its config loads it (pixels on first use)."""
    config = record["config"]
    root = config.get("data_root")
    return load_dataset(config["dataset"], Path(root) if root else None, config.get("split_seed", 0),
                        LoadOptions(skip_corrupt=config.get("skip_corrupt", False),
                                    allow_outside_root=config.get("allow_outside_root", False)))


def item_pixels(dataset: HashingDataset, items: list[int]) -> torch.Tensor:
    """uint8 (N, 3, H, W) pixels of dataset items, as the runner feeds them to the transform."""
    size = len(dataset.labels)
    for item in items:
        if not 0 <= item < size:
            raise HashbenchError(f"item must be an index in [0, {size - 1}] of {dataset.name}; got {item}")
    store = dataset.images
    if isinstance(store, TensorImages):
        return store.pixels[torch.as_tensor(items)]
    return torch.stack([decode_image(store.paths[item], store.load_size) for item in items])


def file_pixels(model: HashModel, path: Path) -> torch.Tensor:
    """uint8 (1, 3, H, W) pixels of an image file, at the run's stored side when it is known."""
    return torch.from_numpy(decode_rgb(path, str(path), model.input_size)).permute(2, 0, 1)[None]


def item_paths(record: dict[str, Any], dataset: HashingDataset | None = None) -> list[Path] | None:
    """The file of every dataset item for a dataset read from files (list files, image
    folders), None for one held in memory (digits, CIFAR-10: results name indices); the
    run's dataset is loaded unless given."""
    if ":" not in (record.get("config") or {}).get("dataset", record["dataset"]):  # the record's may be a short name
        return None
    store = (dataset if dataset is not None else run_dataset(record)).images
    return store.paths if isinstance(store, FileImages) else None


def search_run(folder: Path, *, images: list[Path] | None = None, items: list[int] | None = None, topk: int = 10,
               backend: str = "auto") -> list[dict[str, Any]]:
    """Top-``topk`` database items of each query: ``{"query": {"image"} or {"item", "path",
    "labels"}, "results": [{"rank", "item", "path", "labels", "distance"}]}``, ordered by
    (Hamming distance, database index)."""
    if bool(images) == bool(items):
        raise HashbenchError("give queries as --image PATH or as --item N (one kind, at least one)")
    record = read_record(folder)
    model = load_model(folder)  # checks the record and the artifact first
    dataset = run_dataset(record) if items else None
    class_names = (record.get("protocol") or {}).get("class_names") or []
    paths = item_paths(record, dataset)

    def label_names(row: np.ndarray) -> list[str]:
        return [class_names[i] if i < len(class_names) else str(i) for i in np.flatnonzero(row)]

    if items:
        codes = model.encode_bits(item_pixels(dataset, items)).numpy()
        queries = [{"item": item, "path": str(paths[item]) if paths is not None else None,
                    "labels": label_names(dataset.labels[item].numpy())} for item in items]
    else:
        queries = [{"image": str(path)} for path in images]
        codes = np.concatenate([model.encode_bits(file_pixels(model, path)).numpy() for path in images])
    stored = load_codes(folder)
    found = BinaryIndex(stored["database_codes"], backend=backend).search(codes, topk)
    out = []
    for query, distances, positions in zip(queries, found.distances, found.indices, strict=True):
        results = []
        for rank, (distance, position) in enumerate(zip(distances, positions, strict=True), start=1):
            item = int(stored["database_index"][position])
            results.append({"rank": rank, "item": item, "path": str(paths[item]) if paths is not None else None,
                            "labels": label_names(stored["database_labels"][position]), "distance": int(distance)})
        out.append({"query": query, "results": results})
    return out


def format_results(found: list[dict[str, Any]]) -> str:
    """The results as text: one block per query, one line per neighbour."""
    lines = []
    for entry in found:
        query = entry["query"]
        if "item" in query:
            lines.append(f"query: item {query['item']}{'  ' + query['path'] if query['path'] else ''}  "
                         f"label {','.join(query['labels']) or '-'}")
        else:
            lines.append(f"query: {query['image']}")
        for result in entry["results"]:
            name = result["path"] or f"item {result['item']}"
            lines.append(f"  {result['rank']:>3}  {name}  label {','.join(result['labels']) or '-'}  "
                         f"distance {result['distance']}")
    return "\n".join(lines)
