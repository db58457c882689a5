"""The standard protocols' documented sizes: the one table ``hashbench data check`` compares a
dataset against, and from which the list presets take their summaries and mAP cut-offs.

Where each figure comes from:

* CIFAR-10 (``cifar10``, ``cifar10-1``, ``cifar10-2``): the three configurations of
  swuxyj/DeepHash-pytorch, README.md ("Dataset"); ``cifar10-mini`` and ``digits`` are
  hashbench's own (see ``datasets.py``).
* ImageNet-100: thuml/HashNet pytorch/data/imagenet/train.txt (13,000 lines, 130 per class) and
  test.txt (5,000 lines: the 50 ILSVRC-2012 validation images of each class);
  caffe/data/imagenet/test/database0.txt ... database7.txt (128,503 lines together: every
  ILSVRC-2012 training image of the 100 classes, 1,029 to 1,300 a class, the 13,000 training
  images among them). The class list (``imagenet100_classes.txt``) is derived from the same files.
* MS-COCO: swuxyj/DeepHash-pytorch data/coco/train.txt and test.txt (10,000 and 5,000 lines,
  80 columns, every line with a label; the queries include train2014 images, i.e. they are drawn
  from all labelled images). The database, 117,218 (122,218 labelled 2014 train+val images less
  the 5,000 queries), is the count hashbench's issue tracker gives for the standard lists: the
  database.txt files of HashNet (pytorch/), DeepHash-pytorch and CSQ were absent from the
  repository snapshots read, so it was not recounted. HashNet's older caffe/data/coco lists
  differ (112,218 database lines, the 5,000 queries among them).
* NUS-WIDE, 21 concepts: swuxyj/DeepHash-pytorch README.md (195,834 images carry one of the 21
  most frequent concepts; 100 queries a concept, 2,100 in all; the rest is the database,
  193,734; 500 training images a concept, 10,500, sampled from it) and data/nuswide_21/train.txt,
  test.txt (10,500 and 2,100 lines, 21 columns); fcakir/deep-mihash +imdb/nus.m (the same
  195,834 after keeping the 21 most frequent of the 81 concepts and dropping unlabelled images).
* mAP cut-offs: DeepHash-pytorch utils/tools.py ``config_dataset`` (topK 1,000 for imagenet,
  5,000 for coco and nuswide_21, all for cifar) and the CSQ commands in
  yuanli2333/Hadamard-Matrix-for-hashing README.md (``--R 1000`` ImageNet, ``--R 5000`` COCO
  and NUS-WIDE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLASS_LIST = Path(__file__).with_name("imagenet100_classes.txt")


@dataclass(frozen=True)
class Protocol:
    """A protocol's documented split sizes, its mAP cut-off (None: the whole database) and
    whether its training images are part of its database (else the two are disjoint)."""

    train: int
    query: int
    database: int
    topk: int | None
    classes: int
    train_in_database: bool
    source: str

    def sizes(self) -> dict[str, int]:
        return {"train": self.train, "query": self.query, "database": self.database}


PROTOCOLS: dict[str, Protocol] = {
    "digits": Protocol(1_597, 200, 1_597, None, 10, True, "hashbench: 20 queries a class; train = database"),
    "cifar10": Protocol(5_000, 1_000, 54_000, 54_000, 10, False, "DeepHash-pytorch README, cifar10"),
    "cifar10-1": Protocol(5_000, 1_000, 59_000, 59_000, 10, True, "DeepHash-pytorch README, cifar10-1"),
    "cifar10-2": Protocol(50_000, 10_000, 50_000, 50_000, 10, True, "DeepHash-pytorch README, cifar10-2"),
    "cifar10-mini": Protocol(500, 200, 2_000, 2_000, 10, False, "hashbench smoke test: 50 / 20 / 200 a class"),
    "imagenet100": Protocol(13_000, 5_000, 128_503, 1_000, 100, True, "thuml/HashNet lists"),
    "coco": Protocol(10_000, 5_000, 117_218, 5_000, 80, True, "HashNet / DeepHash-pytorch lists"),
    "nuswide21": Protocol(10_500, 2_100, 193_734, 5_000, 21, True, "DeepHash-pytorch lists and README"),
}

#: The presets read from DeepHash-style list files, with the full name of their source.
LIST_PRESETS: dict[str, str] = {
    "imagenet100": "ImageNet-100 (HashNet's 100 ILSVRC-2012 classes)",
    "coco": "MS-COCO 2014, 80 categories multi-hot",
    "nuswide21": "NUS-WIDE, the 21 most frequent concepts multi-hot",
}


def describe(name: str) -> str:
    """A protocol's sizes and cut-off in one phrase, as the dataset summaries print them."""
    p = PROTOCOLS[name]
    return f"train {p.train:,} / query {p.query:,} / database {p.database:,}; mAP@{p.topk or 'all'}"


def imagenet100_classes(path: Path = CLASS_LIST) -> list[str]:
    """ImageNet-100's synsets (WNIDs) in label-column order: HashNet's, or those of a file in
    the same format (one WNID a line, first word; ``#`` comments and blank lines left out)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
