"""Datasets and their protocols, registered by name.

A :class:`DatasetSpec` knows where its data lives, how to split it (seeded) and the mAP
cut-off K of its protocol; ``load`` returns a :class:`HashingDataset` whose labels and
split are available at once and whose pixels are decoded on first use.

Built-in names: ``digits`` (the embedded default), ``cifar10``, ``cifar10-1``,
``cifar10-2``, ``imagenet100``, ``coco``, ``nuswide21``; and two patterns that take a
folder: ``listfile:DIR`` (DeepHash-style list files) and ``imagefolder:DIR``
(``train/<class>/*`` and ``test/<class>/*``). ``NAME=listfile:DIR`` (or ``imagefolder``)
gives a folder dataset a short name (:func:`display_name`) that results folders, tables and
figures show instead of the path; the run's config keeps the whole spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashbench.data.images import FileImages, ImageStore, TensorImages
from hashbench.data.protocols import Split, sample_per_class
from hashbench.data.sources import (
    LIST_FILES,
    cached_pixels,
    download_torchvision_cifar10,
    fingerprint,
    load_torchvision_cifar10,
    read_list_file,
    release_folder,
    scan_tar,
    scan_tree,
)
from hashbench.data.standard import LIST_PRESETS, PROTOCOLS, describe
from hashbench.registry import DATASETS, UnknownNameError
from hashbench.validation import HashbenchError


@dataclass
class HashingDataset:
    """Labels, split and (lazily) pixels of one dataset under one protocol."""

    name: str
    labels: torch.Tensor  # (N, C) float32 multi-hot
    split: Split
    topk: int | None
    class_names: list[str]
    source: str  # where the data came from, with a fingerprint of its content
    split_seed: int
    load_images: Callable[[], ImageStore] = field(repr=False)
    validation: int = 0  # training items held out as the queries (see holdout)
    # List-file datasets: each item's image file and the "file:line" that lists it, so that
    # checks (hashbench.data.check.dataset_problems) find an image listed twice or in two roles.
    files: list[str] | None = field(default=None, repr=False)
    origins: list[str] | None = field(default=None, repr=False)
    # What hashbench run found wrong with the data but trained on (one line each); kept in the record.
    warnings: list[str] = field(default_factory=list)
    # List-file datasets: the digest of the list files' content (part of digest()).
    lists_digest: str | None = None
    # The file of each item when images are read from files (list files, image folders; decoded
    # to FileImages' LOAD_SIZE squares), known without decoding any; None for images held in memory.
    image_files: list[Path] | None = field(default=None, repr=False)

    @cached_property
    def images(self) -> ImageStore:
        return self.load_images()

    @property
    def num_classes(self) -> int:
        return self.labels.shape[1]

    @property
    def multi_label(self) -> bool:
        return bool((self.labels.sum(1) > 1).any())

    def digest(self) -> str:
        """A digest of the data a run is made on: labels, class names, split and, for list
        files, the lists' content; no path or file time, so the same data in another folder
        matches (the record's ``protocol.data_digest``: a finished run on other data is never
        reused)."""
        sha = hashlib.sha256()
        labels = self.labels.numpy()
        sha.update(f"{labels.shape}|{self.class_names}|{self.split.digest()}|{self.lists_digest or ''}".encode())
        sha.update(np.ascontiguousarray(labels).tobytes())
        return sha.hexdigest()[:16]

    def holdout(self, count: int) -> HashingDataset:
        """This dataset with ``count`` training items (drawn with ``split_seed``) as its
        queries, left out of training and of the database: a validation protocol on which
        choices can be made without looking at the test queries, which it never touches."""
        train = self.split.train
        if not 0 < count <= len(train) - 2:
            raise HashbenchError(f"validation must leave at least 2 of the {len(train)} training items of "
                                 f"{self.name}; got {count}")
        held = np.sort(np.random.default_rng(self.split_seed).choice(train, size=count, replace=False))
        database = np.setdiff1d(self.split.database, held)
        split = Split(train=np.setdiff1d(train, held), query=held, database=database)
        topk = min(self.topk, len(database)) if self.topk else None
        return dataclasses.replace(self, split=split, topk=topk, validation=count, load_images=lambda: self.images)

    def protocol(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split_seed": self.split_seed,
            "sizes": self.split.sizes(),
            "topk": self.topk,
            "num_classes": self.num_classes,
            "multi_label": self.multi_label,
            "split_digest": self.split.digest(),
            "source": self.source,
            "class_names": self.class_names,
            **({"validation": self.validation} if self.validation else {}),
            **({"warnings": self.warnings} if self.warnings else {}),
        }


@dataclass(frozen=True)
class LoadOptions:
    """How to read a dataset: leave out unreadable list-file images (counted) instead of
    failing; fetch CIFAR-10 with torchvision when it is not under the data root; accept
    list-file image paths that lead outside the list folder."""

    skip_corrupt: bool = False
    download: bool = False
    allow_outside_root: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``load(data_root, split_seed, options)`` and its config defaults."""

    name: str
    summary: str
    load: Callable[[Path, int, LoadOptions], HashingDataset]
    defaults: dict[str, Any] = field(default_factory=dict)


def default_data_root() -> Path:
    return Path(os.environ.get("HASHBENCH_DATA", "data"))


def one_hot(class_ids: np.ndarray, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(class_ids), num_classes).float()


# --- digits: the embedded default --------------------------------------------------------

DIGITS_QUERY_PER_CLASS = 20


def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """UCI's 8x8 digits as scikit-learn ships them: (1797, 8, 8) pixels in 0..16 and labels.

    Read straight from scikit-learn's data file: importing ``sklearn`` to call
    ``load_digits`` costs about 2 s, a third of a short run's start-up."""
    spec = importlib.util.find_spec("sklearn")
    table_file = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if table_file is None or not table_file.is_file():  # another layout: ask scikit-learn itself
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target.astype(np.int64)
    table = np.loadtxt(table_file, delimiter=",")
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)


def _load_digits(_root: Path, seed: int, _options: LoadOptions) -> HashingDataset:
    images, class_ids = digits_table()
    parts = sample_per_class(class_ids, {"query": DIGITS_QUERY_PER_CLASS}, seed)
    pixels = torch.from_numpy((images * (255 / 16)).round().astype(np.uint8))
    return HashingDataset(
        name="digits",
        labels=one_hot(class_ids, 10),
        split=Split(train=parts["rest"], query=parts["query"], database=parts["rest"]),
        topk=None,
        class_names=[str(d) for d in range(10)],
        source=f"sklearn.datasets.load_digits ({len(class_ids)} images)",
        split_seed=seed,
        load_images=lambda: TensorImages(pixels[:, None].expand(-1, 3, -1, -1).contiguous()),
    )


DATASETS.register(
    "digits",
    DatasetSpec(
        "digits",
        "scikit-learn's bundled 8x8 digits (1,797 images, 10 classes); 200 queries, train = database",
        _load_digits,
        # A small CNN trained from scratch on 16-pixel upsampled digits; the quick recipe that
        # suits it is experiments/digits.toml's (a dataset sets its model, methods their recipes).
        defaults={"backbone": "small_cnn", "weights": None, "image_size": 16},
    ),
)


# --- CIFAR-10 and its three protocols ----------------------------------------------------

@dataclass(frozen=True)
class _Cifar:
    class_ids: np.ndarray
    subsets: np.ndarray
    class_names: list[str]
    source: str
    load_pixels: Callable[[], torch.Tensor]


def _find_cifar10(root: Path, download: bool = False) -> _Cifar:
    if root.is_file():
        tree, key = scan_tar(root), fingerprint(root)
        return _Cifar(tree.class_ids, tree.subsets, tree.class_names, f"{root} ({key})",
                      lambda: cached_pixels(tree, root, key))
    for folder in (root, root / "cifar10", root / "cifar-10"):
        if (folder / "cifar-10-batches-py").is_dir():
            pixels, class_ids, subsets, names = load_torchvision_cifar10(folder)
            return _Cifar(class_ids, subsets, names, f"{folder} ({fingerprint(folder)})",
                          lambda pixels=pixels: pixels)
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            tree, key = scan_tree(folder), fingerprint(folder)
            return _Cifar(tree.class_ids, tree.subsets, tree.class_names, f"{folder} ({key})",
                          lambda tree=tree, folder=folder, key=key: cached_pixels(tree, folder, key))
    tarballs = sorted([*root.glob("cifar10*.tar.gz"), *root.glob("cifar-10*.tar.gz")]) if root.is_dir() else []
    if tarballs:
        return _find_cifar10(tarballs[0])
    if download:
        target = root / "cifar10"
        try:
            download_torchvision_cifar10(target)
        except (OSError, RuntimeError) as err:  # offline: URLError is an OSError
            raise HashbenchError(f"CIFAR-10 not found under data root {root} and the download into {target} "
                                 f"failed: {str(err).splitlines()[0]}") from None
        return _find_cifar10(target)
    raise HashbenchError(
        f"CIFAR-10 not found under data root {root} (expected a .tar.gz of train/<class>/*.jpg and "
        "test/<class>/*.jpg, such a folder, or torchvision's cifar-10-batches-py; set --data-root, "
        "or --set download=true to fetch it with torchvision)"
    )


def _cifar_split(protocol: str, cifar: _Cifar, seed: int) -> tuple[Split, int]:
    """The three CIFAR-10 protocols of DeepHash-pytorch, with their mAP cut-off K, and a
    small one for tests and smoke runs."""
    if protocol == "cifar10-mini":
        parts = sample_per_class(cifar.class_ids, {"query": 20, "train": 50, "database": 200}, seed)
        return Split(train=parts["train"], query=parts["query"], database=parts["database"]), 2000
    if protocol == "cifar10-2":
        train = np.flatnonzero(cifar.subsets == "train").astype(np.int64)
        query = np.flatnonzero(cifar.subsets == "test").astype(np.int64)
        return Split(train=train, query=query, database=train), len(train)
    parts = sample_per_class(cifar.class_ids, {"query": 100, "train": 500}, seed)
    if protocol == "cifar10":
        database = parts["rest"]
    else:  # cifar10-1: the training images are part of the database
        database = np.sort(np.concatenate([parts["train"], parts["rest"]]))
    return Split(train=parts["train"], query=parts["query"], database=database), len(database)


def _cifar_loader(protocol: str) -> Callable[[Path, int, LoadOptions], HashingDataset]:
    def load(root: Path, seed: int, options: LoadOptions) -> HashingDataset:
        cifar = _find_cifar10(root, options.download)
        split, topk = _cifar_split(protocol, cifar, seed)
        return HashingDataset(
            name=protocol,
            labels=one_hot(cifar.class_ids, len(cifar.class_names)),
            split=split,
            topk=topk,
            class_names=cifar.class_names,
            source=cifar.source,
            split_seed=seed,
            load_images=lambda: TensorImages(cifar.load_pixels()),
        )

    return load


# MobileNetV2's IMAGENET1K_V1 weights are the ones shipped for offline use (../shared).
_CIFAR_DEFAULTS = {"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"}
for _name, _summary in {
    "cifar10": "CIFAR-10: 100 query + 500 train per class; database = the other 54,000 (mAP@54000)",
    "cifar10-1": "CIFAR-10: 1,000 query; database = the other 59,000; 5,000 train from it (mAP@59000)",
    "cifar10-2": "CIFAR-10: query = 10,000 test images; train = database = 50,000 (mAP@50000)",
    "cifar10-mini": "CIFAR-10 smoke test: 20 query, 50 train, 200 database per class (mAP@2000)",
}.items():
    DATASETS.register(_name, DatasetSpec(_name, _summary, _cifar_loader(_name), defaults=_CIFAR_DEFAULTS))


# --- list files (DeepHash-pytorch / HashNet format) --------------------------------------

def _digest_files(*paths: Path) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def load_list_dataset(name: str, root: Path, topk: int | None, seed: int, options: LoadOptions = LoadOptions()
                      ) -> HashingDataset:
    """``train.txt``, ``test.txt`` (queries) and ``database.txt`` under ``root``; with
    ``options.skip_corrupt`` every image is checked first and unreadable ones are left out
    (counted). Image paths stay inside ``root`` (or the release folder of a prepared folder)
    unless ``options.allow_outside_root``."""
    if not root.is_dir():
        raise HashbenchError(f"data root for {name} not found: {root}")
    files = {role: root / file for role, file in LIST_FILES.items()}
    release = release_folder(root)
    lists = {role: read_list_file(path, root, skip_corrupt=options.skip_corrupt, release=release,
                                  allow_outside_root=options.allow_outside_root) for role, path in files.items()}
    skipped = sum(lst.skipped for lst in lists.values())
    widths = {role: lst.labels.shape[1] for role, lst in lists.items()}
    if len(set(widths.values())) != 1:
        raise HashbenchError(f"{root}: list files disagree on the number of labels: {widths}")
    paths = [p for role in ("train", "query", "database") for p in lists[role].paths]
    labels = np.concatenate([lists[role].labels for role in ("train", "query", "database")])
    bounds = np.cumsum([0] + [len(lists[role].paths) for role in ("train", "query", "database")])
    ranges = [np.arange(bounds[i], bounds[i + 1], dtype=np.int64) for i in range(3)]
    lists_digest = _digest_files(*files.values())
    return HashingDataset(
        name=name,
        labels=torch.from_numpy(labels),
        split=Split(train=ranges[0], query=ranges[1], database=ranges[2]),
        topk=topk,
        class_names=[str(i) for i in range(labels.shape[1])],
        source=f"{root} (lists {lists_digest}"
               f"{f'; {skipped} corrupt images skipped' if skipped else ''})",
        split_seed=seed,
        load_images=lambda: FileImages(paths),
        files=[os.path.normpath(p) for p in paths],
        origins=[f"{files[role]}:{n}" for role in ("train", "query", "database") for n in lists[role].lines],
        lists_digest=lists_digest,
        image_files=paths,
    )


def list_folder(name: str, root: Path) -> Path:
    """Where a list preset's files are under a data root: the root itself when it holds
    ``train.txt``, else ``<root>/<name>``."""
    return root if (root / LIST_FILES["train"]).is_file() else root / name


def _list_preset(name: str, topk: int | None) -> Callable[[Path, int, LoadOptions], HashingDataset]:
    def load(root: Path, seed: int, options: LoadOptions) -> HashingDataset:
        return load_list_dataset(name, list_folder(name, root), topk, seed, options)

    return load


for _name, _title in LIST_PRESETS.items():
    DATASETS.register(_name, DatasetSpec(_name, f"{_title}, list files ({describe(_name)})",
                                         _list_preset(_name, PROTOCOLS[_name].topk),
                                         defaults={"backbone": "resnet50"}))


def _load_image_folder(root: Path, seed: int, _options: LoadOptions) -> HashingDataset:
    if not root.is_dir():
        raise HashbenchError(f"image folder not found: {root}")
    tree = scan_tree(root)
    if set(tree.subsets) != {"train", "test"}:
        raise HashbenchError(f"{root}: expected train/<class>/* and test/<class>/* subfolders")
    train = np.flatnonzero(tree.subsets == "train").astype(np.int64)
    query = np.flatnonzero(tree.subsets == "test").astype(np.int64)
    files = [root / member for member in tree.members]
    return HashingDataset(
        name=f"imagefolder:{root}",
        labels=one_hot(tree.class_ids, len(tree.class_names)),
        split=Split(train=train, query=query, database=train),
        topk=None,
        class_names=tree.class_names,
        source=f"{root} ({fingerprint(root)})",
        split_seed=seed,
        load_images=lambda: FileImages(files),
        image_files=files,
    )


PATTERNS: dict[str, DatasetSpec] = {
    "listfile": DatasetSpec(
        "listfile:DIR", "any folder with train.txt, test.txt and database.txt (K = all, or --set topk=N); "
                        "NAME=listfile:DIR shows it as NAME",
        lambda root, seed, options: load_list_dataset(f"listfile:{root}", root, None, seed, options),
    ),
    "imagefolder": DatasetSpec(
        "imagefolder:DIR", "any folder with train/<class>/* (train = database) and test/<class>/* (queries); "
                           "NAME=imagefolder:DIR shows it as NAME",
        _load_image_folder,
    ),
}


#: What a folder dataset's display name may hold: it becomes a folder and a file name.
DISPLAY_NAME = re.compile(r"[A-Za-z0-9._-]+")


def split_display_name(name: str) -> tuple[str | None, str]:
    """``(NAME, pattern:DIR)`` of ``NAME=pattern:DIR``; ``(None, name)`` for a name without one
    (an ``=`` after the ``:``, inside a folder's path, names nothing)."""
    label, sep, spec = name.partition("=")
    return (label, spec) if sep and ":" not in label else (None, name)


def display_name(name: str) -> str:
    """What results folders, tables and figure file names show for a dataset: NAME of
    ``NAME=pattern:DIR``, else the name itself."""
    return split_display_name(name)[0] or name


def get_dataset(name: str) -> tuple[DatasetSpec, Path | None]:
    """The spec for ``name``; for ``[NAME=]pattern:DIR`` names also the folder they carry."""
    label, name = split_display_name(name)
    if label is not None:
        if not DISPLAY_NAME.fullmatch(label):
            raise HashbenchError(f"dataset name {label!r} (of {label}={name}) must be letters, digits, '.', '_' or '-'")
        if label in DATASETS.names():
            raise HashbenchError(f"dataset name {label!r} (of {label}={name}) is a registered dataset's; choose "
                                 "another")
        if name.partition(":")[0] not in PATTERNS:
            raise HashbenchError(f"only folder datasets take a name (NAME=listfile:DIR or NAME=imagefolder:DIR); got "
                                 f"{label}={name}")
    prefix, sep, folder = name.partition(":")
    if sep:
        if prefix not in PATTERNS or not folder:
            raise HashbenchError(f"unknown dataset pattern {name!r} (known: listfile:DIR, imagefolder:DIR)")
        return PATTERNS[prefix], Path(folder)
    try:
        return DATASETS.get(name), None
    except UnknownNameError as err:
        raise HashbenchError(f"{err}; or a folder as listfile:DIR (train.txt, test.txt, database.txt) or "
                             "imagefolder:DIR (train/<class>/*, test/<class>/*)") from None


def load_dataset(name: str, data_root: Path | None = None, split_seed: int = 0,
                 options: LoadOptions = LoadOptions()) -> HashingDataset:
    spec, folder = get_dataset(name)
    dataset = spec.load(folder or data_root or default_data_root(), split_seed, options)
    label = split_display_name(name)[0]
    return dataset if label is None else dataclasses.replace(dataset, name=label)
