"""``hashbench data prepare``: the standard hashing versions of MS-COCO 2014, NUS-WIDE and
ImageNet-100, built from the official releases as DeepHash-style list files.

Each preset reads the release as its publisher ships it, keeps the images the protocol keeps,
draws the queries and then the training images with one generator seeded by ``seed``, and
:func:`write_lists` writes ``train.txt``, ``test.txt`` (the queries), ``database.txt`` and
``dataset.json`` (counts, seed, options, the metadata files read with their sha256, the class
names, the sha256 of each list, and hashbench's version and commit). Image paths in the lists
are relative to the output folder, so the lists read with ``listfile:OUT`` or with the preset
and ``--data-root OUT``.

Facts, and where they were read (the sizes are in :mod:`hashbench.data.standard`):

* COCO: ``annotations/instances_train2014.json`` and ``instances_val2014.json``, images under
  ``train2014/`` and ``val2014/`` (the paths the standard lists name, e.g.
  ``train2014/COCO_train2014_000000072095.jpg`` in swuxyj/DeepHash-pytorch data/coco/train.txt).
  An image is labelled when it has at least one instance annotation; the 80 label columns are
  the categories in alphabetical order of their names, not of their (non-contiguous) ids: in
  the standard lists (thuml/HashNet pytorch/data/coco/train.txt, DeepHash-pytorch
  data/coco/train.txt and test.txt) column 49 is the most frequent (person, about 54% of the
  images), columns 35 and 69 the rarest (hair drier, toaster) and every column's frequency fits
  its name in that order, whereas id order would put person (id 1) in column 0.
* NUS-WIDE: ``ImageList/Imagelist.txt`` (one image a line, Windows paths such as
  ``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``) and
  ``Groundtruth/AllLabels/Labels_<concept>.txt`` (one 0/1 a line, in Imagelist order), 81
  concepts; keep the 21 concepts with the most images and drop the images with none of them:
  195,834 images (fcakir/deep-mihash +imdb/nus.m, which reads the same files;
  DeepHash-pytorch README.md). Images are read from ``Flickr/<concept>/<file>`` (the release's
  folders) or, without a ``Flickr/`` folder, from ``images/<file>`` (the flattened copy whose
  paths the DeepHash-pytorch lists name, e.g. ``images/0571_262727880.jpg``).
* ImageNet-100: ``train/<wnid>/*`` and ``val/<wnid>/*`` of ILSVRC-2012 (the validation images
  sorted into class folders, as torchvision's ``ImageNet`` leaves them); HashNet's 100 classes
  (``standard/imagenet100_classes.txt``); the queries are the 50 validation images of each
  class, the database every training image of the 100 classes, and 130 training images a class
  are drawn from the database (thuml/HashNet pytorch/data/imagenet/ and caffe/data/imagenet/).

Choices where the sources leave one open:

* COCO queries are drawn uniformly from all labelled train2014 and val2014 images (the standard
  lists mix both: a third of their queries are val2014 images, val2014's share of all images),
  the training images uniformly from the database.
* Per-class quotas (NUS-WIDE's 100 queries and 500 training images a concept, ImageNet-100's 50
  and 130 a class) are met by :func:`draw_per_class`: each drawn image is charged to one of its
  classes, the classes filled rarest first, so every class gets exactly its quota and the total
  is quota x classes. DeepHash-pytorch's data/nuswide_21/code.py fills the same quotas by a
  greedy pass over an unseeded random order, so its lists cannot be redrawn; only their sizes
  can be matched.
* NUS-WIDE's 21 columns are the concepts in decreasing order of frequency, ties by name
  (deep-mihash's order; the DeepHash-pytorch lists do not say theirs). Class names go into
  dataset.json.
* A labelled image missing on disk stops the preparation with a count and the first few paths;
  ``skip_missing`` leaves such images out and records how many in dataset.json, so a short
  database is explained where it is made.
* Lists keep the release's order (COCO and ImageNet sorted by path, NUS-WIDE in Imagelist order),
  so a seed gives byte-identical lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.data.protocols import Split
from hashbench.data.sources import IMAGE_SUFFIXES, LIST_FILES, MANIFEST
from hashbench.data.standard import CLASS_LIST, PROTOCOLS, imagenet100_classes
from hashbench.results import versions
from hashbench.storage import atomic_write, file_sha256
from hashbench.validation import HashbenchError

COCO_SUBSETS = ("train2014", "val2014")
COCO_CATEGORIES = 80
NUSWIDE_CONCEPTS = 21


@dataclass(frozen=True)
class Prepared:
    """A preset's kept images (paths relative to the release folder), their multi-hot labels,
    the class names, the three roles, the metadata files read and what was left out."""

    paths: list[str]
    labels: np.ndarray  # (N, C) uint8
    class_names: list[str]
    split: Split
    sources: list[Path]
    counts: dict[str, int]


def draw_per_class(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator,
                   class_names: list[str], what: str) -> np.ndarray:
    """``per_class`` items of every class from ``pool`` (indices), sorted: each drawn item is
    charged to one of its classes; classes are filled rarest first (in the pool), each from
    the items of that class not drawn yet, so that a rare class is not used up by a frequent
    one that co-occurs with it. Single-label data gives a plain per-class draw."""
    taken = np.zeros(len(labels), dtype=bool)
    chosen = []
    for cls in np.argsort(labels[pool].sum(0), kind="stable"):
        members = pool[(labels[pool, cls] > 0) & ~taken[pool]]
        if len(members) < per_class:
            raise HashbenchError(f"{what}: class {class_names[cls]} has {len(members)} images left to draw from; "
                                 f"{per_class} needed")
        picked = rng.choice(members, size=per_class, replace=False)
        taken[picked] = True
        chosen.append(picked)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _per_class(name: str, total: int, classes: int) -> int:
    if total <= 0 or total % classes:
        raise HashbenchError(f"{name} must be a positive multiple of the {classes} classes; got {total}")
    return total // classes


def _keep_present(raw: Path, paths: list[str], skip_missing: bool) -> np.ndarray:
    """Which images exist; a missing one is an error unless ``skip_missing``."""
    present = np.array([(raw / p).is_file() for p in paths], dtype=bool)
    missing = [p for p, ok in zip(paths, present, strict=True) if not ok]
    if missing and not skip_missing:
        raise HashbenchError(f"{len(missing):,} of the {len(paths):,} labelled images are missing under {raw} "
                             f"(first: {', '.join(missing[:3])}); --skip-missing leaves them out and records "
                             "how many in dataset.json")
    return present


# --- MS-COCO 2014 -------------------------------------------------------------------------

def _read_coco(raw: Path) -> tuple[list[str], np.ndarray, list[str], list[Path], int]:
    """Labelled images of train2014 + val2014 (sorted by path), labels with columns in
    alphabetical order of category name, the names, the files read and the unlabelled count."""
    paths: list[str] = []
    rows: list[list[int]] = []
    categories: dict[int, str] | None = None
    files, unlabelled = [], 0
    for subset in COCO_SUBSETS:
        file = raw / "annotations" / f"instances_{subset}.json"
        if not file.is_file():
            raise HashbenchError(f"COCO annotations not found: {file} (the 2014 release's annotations/"
                                 "instances_train2014.json and instances_val2014.json)")
        try:
            data = json.loads(file.read_bytes())
            found = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            by_image: dict[int, set[int]] = {}
            for annotation in data["annotations"]:
                by_image.setdefault(int(annotation["image_id"]), set()).add(int(annotation["category_id"]))
            images = sorted((str(image["file_name"]), int(image["id"])) for image in data["images"])
        except (ValueError, KeyError, TypeError) as err:
            raise HashbenchError(f"{file}: not a COCO instances file ({type(err).__name__}: {err})") from None
        if categories is None:
            categories = found
        elif found != categories:
            raise HashbenchError(f"{file}: its categories differ from those of {files[0]}")
        if len(categories) != COCO_CATEGORIES:
            raise HashbenchError(f"{file}: {len(categories)} categories; COCO 2014 has {COCO_CATEGORIES}")
        column = {cid: i for i, (cid, _) in enumerate(sorted(categories.items(), key=lambda item: item[1]))}
        files.append(file)
        for file_name, image_id in images:
            if image_id not in by_image:
                unlabelled += 1
                continue
            try:
                rows.append(sorted(column[c] for c in by_image[image_id]))
            except KeyError as err:
                raise HashbenchError(f"{file}: image {image_id} is annotated with unknown category {err}") from None
            paths.append(f"{subset}/{file_name}")
    labels = np.zeros((len(rows), COCO_CATEGORIES), dtype=np.uint8)
    for i, columns in enumerate(rows):
        labels[i, columns] = 1
    return paths, labels, sorted(categories.values()), files, unlabelled


def prepare_coco(raw: Path, *, seed: int = 0, queries: int = PROTOCOLS["coco"].query,
                 train: int = PROTOCOLS["coco"].train, skip_missing: bool = False) -> Prepared:
    """MS-COCO 2014 as the hashing papers use it: the images with a label, ``queries`` of them
    held out at random, the rest the database, ``train`` images drawn from the database."""
    paths, labels, names, files, unlabelled = _read_coco(raw)
    present = _keep_present(raw, paths, skip_missing)
    paths, labels = [p for p, ok in zip(paths, present, strict=True) if ok], labels[present]
    if not 0 < queries < len(paths) or not 0 < train <= len(paths) - queries:
        raise HashbenchError(f"queries and train must be positive and leave a database of at least train images; "
                             f"got {queries:,} queries and {train:,} train of {len(paths):,} labelled images")
    rng = np.random.default_rng(seed)
    query = np.sort(rng.choice(len(paths), size=queries, replace=False)).astype(np.int64)
    database = np.setdiff1d(np.arange(len(paths)), query)
    training = np.sort(rng.choice(database, size=train, replace=False)).astype(np.int64)
    return Prepared(paths, labels, names, Split(train=training, query=query, database=database), files,
                    {"unlabelled_dropped": unlabelled, "missing_skipped": int((~present).sum())})


# --- NUS-WIDE ------------------------------------------------------------------------------

def _read_labels(file: Path, count: int) -> np.ndarray:
    values = file.read_text().split()
    if len(values) != count:
        raise HashbenchError(f"{file}: {len(values):,} labels, but the image list has {count:,} images")
    column = np.array(values)
    bad = np.flatnonzero((column != "0") & (column != "1"))
    if len(bad):
        raise HashbenchError(f"{file}:{bad[0] + 1}: labels must be 0 or 1; got {values[bad[0]]!r}")
    return column == "1"


def prepare_nuswide21(raw: Path, *, seed: int = 0, queries: int = PROTOCOLS["nuswide21"].query,
                      train: int = PROTOCOLS["nuswide21"].train, skip_missing: bool = False) -> Prepared:
    """NUS-WIDE's 21 most frequent concepts: the images with one of them, ``queries / 21`` a
    concept held out, the rest the database, ``train / 21`` a concept drawn from it."""
    image_list = raw / "ImageList" / "Imagelist.txt"
    label_dir = raw / "Groundtruth" / "AllLabels"
    if not image_list.is_file():
        raise HashbenchError(f"NUS-WIDE image list not found: {image_list} (the release's ImageList/Imagelist.txt)")
    label_files = sorted(label_dir.glob("Labels_*.txt"))
    if len(label_files) < NUSWIDE_CONCEPTS:
        raise HashbenchError(f"{label_dir}: {len(label_files)} Labels_<concept>.txt files; the release has 81 "
                             f"and the protocol needs the {NUSWIDE_CONCEPTS} most frequent")
    entries = [line.strip().replace("\\", "/").split("/")[-2:] for line in image_list.read_text().splitlines()
               if line.strip()]
    if any(len(entry) != 2 for entry in entries):
        raise HashbenchError(f"{image_list}: expected <concept folder>\\<file> paths on every line")
    if (raw / "Flickr").is_dir():
        paths = [f"Flickr/{folder}/{name}" for folder, name in entries]
    elif (raw / "images").is_dir():
        paths = [f"images/{name}" for _, name in entries]
    else:
        raise HashbenchError(f"NUS-WIDE images not found under {raw}: expected Flickr/<concept>/<file> (the "
                             "release) or images/<file> (the flattened copy)")
    concepts = [file.stem.removeprefix("Labels_") for file in label_files]
    matrix = np.stack([_read_labels(file, len(entries)) for file in label_files], axis=1)
    frequency = matrix.sum(0)
    top = sorted(range(len(concepts)), key=lambda i: (-frequency[i], concepts[i]))[:NUSWIDE_CONCEPTS]
    labelled = matrix[:, top].any(1)
    present = _keep_present(raw, [p for p, keep in zip(paths, labelled, strict=True) if keep], skip_missing)
    keep = np.flatnonzero(labelled)[present]
    paths, labels = [paths[i] for i in keep], matrix[keep][:, top].astype(np.uint8)
    names = [concepts[i] for i in top]
    rng = np.random.default_rng(seed)
    everything = np.arange(len(paths), dtype=np.int64)
    query = draw_per_class(labels, everything, _per_class("queries", queries, len(names)), rng, names, "queries")
    database = np.setdiff1d(everything, query)
    training = draw_per_class(labels, database, _per_class("train", train, len(names)), rng, names, "train")
    return Prepared(paths, labels, names, Split(train=training, query=query, database=database),
                    [image_list, *label_files],
                    {"unlabelled_dropped": int((~labelled).sum()), "missing_skipped": int((~present).sum())})


# --- ImageNet-100 --------------------------------------------------------------------------

def prepare_imagenet100(raw: Path, *, seed: int = 0, queries: int = PROTOCOLS["imagenet100"].query,
                        train: int = PROTOCOLS["imagenet100"].train, classes: list[str] | None = None) -> Prepared:
    """ImageNet-100: ``queries / 100`` validation images a class as queries (all 50 of the
    release), every training image of the classes as the database, ``train / 100`` a class
    drawn from it; ``classes`` (WNIDs) replaces HashNet's 100."""
    wnids = classes if classes is not None else imagenet100_classes()
    if not wnids or len(set(wnids)) != len(wnids):
        raise HashbenchError(f"classes must be distinct WNIDs, at least one; got {len(wnids)} with "
                             f"{len(wnids) - len(set(wnids))} repeated")
    paths: list[str] = []
    class_ids: list[int] = []
    subsets: list[str] = []
    for subset in ("train", "val"):
        root = raw / subset
        absent = [w for w in wnids if not (root / w).is_dir()]
        if absent:
            raise HashbenchError(f"{root}: {len(absent)} of the {len(wnids)} classes have no folder (first: "
                                 f"{', '.join(absent[:3])}); expected train/<wnid>/ and val/<wnid>/ with the "
                                 "validation images sorted into class folders")
        for cls, wnid in enumerate(wnids):
            names = sorted(e.name for e in os.scandir(root / wnid) if e.is_file()
                           and e.name.lower().endswith(IMAGE_SUFFIXES))
            if not names:
                raise HashbenchError(f"{root / wnid}: no images")
            paths += [f"{subset}/{wnid}/{name}" for name in names]
            class_ids += [cls] * len(names)
            subsets += [subset] * len(names)
    labels = np.eye(len(wnids), dtype=np.uint8)[class_ids]
    is_val = np.array(subsets) == "val"
    rng = np.random.default_rng(seed)
    query = draw_per_class(labels, np.flatnonzero(is_val), _per_class("queries", queries, len(wnids)), rng, wnids,
                           "queries (from val)")
    database = np.flatnonzero(~is_val).astype(np.int64)
    training = draw_per_class(labels, database, _per_class("train", train, len(wnids)), rng, wnids, "train")
    return Prepared(paths, labels, list(wnids), Split(train=training, query=query, database=database), [],
                    {"val_unused": int(is_val.sum()) - len(query)})


PRESETS: dict[str, Callable[..., Prepared]] = {
    "coco": prepare_coco,
    "nuswide21": prepare_nuswide21,
    "imagenet100": prepare_imagenet100,
}


# --- writing -------------------------------------------------------------------------------

def _refuse_overwrite(out: Path, force: bool) -> None:
    existing = [name for name in (*LIST_FILES.values(), MANIFEST) if (out / name).exists()]
    if existing and not force:
        raise HashbenchError(f"{out} already holds {', '.join(existing)}; --force replaces them")


def write_lists(prepared: Prepared, *, preset: str, raw: Path, out: Path, options: dict[str, Any],
                force: bool = False) -> dict[str, Any]:
    """Write the three lists and ``dataset.json`` into ``out``; return the manifest.

    Every file is written atomically, and ``dataset.json`` last (an old one is removed
    first): a folder with a ``dataset.json`` holds complete lists whose digests it records."""
    _refuse_overwrite(out, force)
    prefix = Path(os.path.relpath(raw.resolve(), out.resolve()))
    names = [(prefix / path).as_posix() for path in prepared.paths]
    spaced = next((name for name in names if any(ch.isspace() for ch in name)), None)
    if spaced is not None:
        raise HashbenchError(f"image path {spaced!r} holds whitespace, which the list format splits on; "
                             "choose --from and --out paths without it")
    # The label rows ("0 1 0 ...\n") of all images at once, as one byte array.
    cells = np.full((len(names), 2 * prepared.labels.shape[1]), ord(" "), dtype=np.uint8)
    cells[:, 0::2] = prepared.labels + ord("0")
    cells[:, -1] = ord("\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    lists = {}
    for role, file in LIST_FILES.items():
        indices = getattr(prepared.split, role)
        data = b"".join(names[i].encode() + b" " + cells[i].tobytes() for i in indices)
        with atomic_write(out / file, "wb") as handle:
            handle.write(data)
        lists[file] = {"lines": len(indices), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "preset": preset,
        "seed": options["seed"],
        "options": options,
        "counts": {**prepared.split.sizes(), "images": len(names), **prepared.counts},
        "standard": PROTOCOLS[preset].sizes(),
        "classes": prepared.class_names,
        "source": {"folder": str(raw.resolve()),
                   "files": {f.relative_to(raw).as_posix(): {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
                             for f in prepared.sources}},
        "lists": lists,
        "versions": versions(),  # hashbench's version and git commit, as in a run record
    }
    with atomic_write(out / MANIFEST, "w") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
    return manifest


def prepare(preset: str, raw: Path, out: Path, *, seed: int = 0, queries: int | None = None,
            train: int | None = None, classes: Path | None = None, skip_missing: bool = False,
            force: bool = False) -> dict[str, Any]:
    """Build ``preset`` from the release in ``raw`` into ``out``; return its manifest. The
    output is checked before the release is read: no gigabytes of JSON to find out it exists."""
    if preset not in PRESETS:
        raise HashbenchError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    if not raw.is_dir():
        raise HashbenchError(f"release folder not found: {raw}")
    _refuse_overwrite(out, force)
    standard = PROTOCOLS[preset]
    kwargs: dict[str, Any] = {"seed": seed, "queries": standard.query if queries is None else queries,
                              "train": standard.train if train is None else train}
    recorded: dict[str, Any] = dict(kwargs)
    if preset == "imagenet100":
        if skip_missing:
            raise HashbenchError("--skip-missing applies to coco and nuswide21 (imagenet100 lists the files it finds)")
        if classes is not None:
            kwargs["classes"] = imagenet100_classes(classes)
        recorded["classes"] = str(classes or CLASS_LIST.name)
    elif classes is not None:
        raise HashbenchError(f"--classes applies to imagenet100 only; got it with {preset}")
    else:
        kwargs["skip_missing"] = recorded["skip_missing"] = skip_missing
    prepared = PRESETS[preset](raw, **kwargs)
    return write_lists(prepared, preset=preset, raw=raw, out=out, options=recorded, force=force)
