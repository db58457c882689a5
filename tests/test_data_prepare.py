"""hashbench data prepare: synthetic releases laid out as COCO 2014, NUS-WIDE and ILSVRC-2012
ship them become list files with the protocol's properties."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re

import numpy as np
import pytest
from helpers import COCO_NAMES, make_coco_release, save_image

import hashbench.data.prepare as prepare_module
from hashbench.data import load_dataset
from hashbench.data.prepare import prepare
from hashbench.data.standard import PROTOCOLS, imagenet100_classes
from hashbench.validation import HashbenchError


def make_nuswide_release(root, flat=False):
    """ImageList/Imagelist.txt and Groundtruth/AllLabels/Labels_<concept>.txt for 25 concepts:
    21 frequent (8+ images each), 4 rare; 10 images carry only rare concepts, 10 none."""
    rng = np.random.default_rng(1)
    concepts = [f"concept{c:02d}" for c in range(25)]
    rows = []
    for i in range(21 * 8):
        row = np.zeros(25, dtype=int)
        row[i % 21] = 1
        row[rng.integers(0, 21)] |= rng.random() < 0.3
        rows.append(row)
    rows += [np.eye(25, dtype=int)[21 + i % 4] for i in range(10)] + [np.zeros(25, dtype=int)] * 10
    labels = np.array(rows)
    lines = []
    for i in range(len(labels)):
        folder, name = concepts[i % 25], f"{i:04d}_{100000 + i}.jpg"
        lines.append(f"C:\\ImageData\\Flickr\\{folder}\\{name}")
        save_image(root / ("images" if flat else f"Flickr/{folder}") / name, rng)
    (root / "ImageList").mkdir(parents=True)
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    for c, concept in enumerate(concepts):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "".join(f"{v}\n" for v in labels[:, c]))
    return root, labels, concepts


def make_imagenet_release(root, wnids, train=3, val=2):
    """train/<wnid>/ and val/<wnid>/ folders of generated images, plus one class not listed."""
    rng = np.random.default_rng(2)
    for wnid in [*wnids, "n99999999"]:
        for k in range(train):
            save_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", rng, 4)
        for k in range(val):
            save_image(root / "val" / wnid / f"ILSVRC2012_val_{wnid[1:]}{k}.JPEG", rng, 4)
    return root


def read_lists(folder):
    """{file: [(path, labels row)]} of a prepared folder."""
    out = {}
    for file in ("train.txt", "test.txt", "database.txt"):
        rows = [line.split() for line in (folder / file).read_text().splitlines()]
        out[file] = [(r[0], np.array([int(v) for v in r[1:]])) for r in rows]
    return out


def test_coco_prepares_the_standard_lists(tmp_path):
    raw = make_coco_release(tmp_path / "raw")
    out = tmp_path / "out"
    manifest = prepare("coco", raw, out, seed=3, queries=8, train=10)
    lists = read_lists(out)
    paths = {file: [p for p, _ in rows] for file, rows in lists.items()}
    labelled = 24 - 3 + 12 - 3
    assert (len(paths["test.txt"]), len(paths["train.txt"]), len(paths["database.txt"])) == (8, 10, labelled - 8)
    assert not set(paths["test.txt"]) & set(paths["database.txt"])
    assert set(paths["train.txt"]) <= set(paths["database.txt"])
    assert len(set(paths["test.txt"]) | set(paths["database.txt"])) == labelled
    rows = [row for file_rows in lists.values() for _, row in file_rows]
    assert {len(row) for row in rows} == {80} and min(row.sum() for row in rows) >= 1  # 80 columns, no empty row
    assert not any(re.search(r"_0000000000(22|23|24)\.jpg|_0000000010(10|11|12)\.jpg", p)
                   for ps in paths.values() for p in ps)  # the unlabelled ones are dropped
    person = next(row for file_rows in lists.values() for p, row in file_rows if p.endswith("000000000001.jpg"))
    assert np.flatnonzero(person).tolist() == [sorted(COCO_NAMES).index("person")] == [49]  # columns by name
    assert manifest["classes"] == sorted(COCO_NAMES)
    assert manifest["counts"] == {"train": 10, "query": 8, "database": labelled - 8, "images": labelled,
                                  "unlabelled_dropped": 6, "missing_skipped": 0}
    assert manifest["seed"] == 3 and manifest["standard"] == {"train": 10_000, "query": 5_000, "database": 117_218}
    for file, entry in manifest["lists"].items():
        assert entry["sha256"] == hashlib.sha256((out / file).read_bytes()).hexdigest()
    assert set(manifest["source"]["files"]) == {"annotations/instances_train2014.json",
                                                "annotations/instances_val2014.json"}
    data = load_dataset(f"listfile:{out}")  # paths are relative to the output folder
    assert data.split.sizes() == {"train": 10, "query": 8, "database": labelled - 8}
    assert data.images[0][1] == ""


def test_seed_reproduces_and_another_seed_differs(tmp_path):
    raw = make_coco_release(tmp_path / "raw")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare("coco", raw, tmp_path / name, seed=seed, queries=8, train=10)
    for file in ("train.txt", "test.txt", "database.txt", "dataset.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "test.txt").read_text() != (tmp_path / "c" / "test.txt").read_text()


def test_nuswide_keeps_the_21_most_frequent_concepts(tmp_path):
    raw, labels, concepts = make_nuswide_release(tmp_path / "raw")
    out = tmp_path / "out"
    manifest = prepare("nuswide21", raw, out, seed=0, queries=21, train=42)
    assert sorted(manifest["classes"]) == concepts[:21]
    lists = read_lists(out)
    query = np.array([row for _, row in lists["test.txt"]])
    train = np.array([row for _, row in lists["train.txt"]])
    assert query.shape == (21, 21) and train.shape == (42, 21)
    assert (query.sum(0) >= 1).all() and (train.sum(0) >= 2).all()  # every concept its quota, 21 x 1 and 21 x 2
    names = {file: {p for p, _ in rows} for file, rows in lists.items()}
    assert not names["test.txt"] & names["database.txt"] and names["train.txt"] <= names["database.txt"]
    kept = 21 * 8
    assert len(names["test.txt"] | names["database.txt"]) == kept  # rare-only and unlabelled images dropped
    assert manifest["counts"]["unlabelled_dropped"] == 20
    column = manifest["classes"]
    for path, row in lists["database.txt"]:
        index = int(path.split("/")[-1].split("_")[0])
        assert row.tolist() == [labels[index, concepts.index(c)] for c in column]
    counts = labels[:, :21].sum(0)
    assert [counts[concepts.index(c)] for c in column] == sorted(counts, reverse=True)  # most frequent first


def test_nuswide_reads_the_flattened_copy_and_reports_missing_images(tmp_path):
    raw, _, _ = make_nuswide_release(tmp_path / "raw", flat=True)
    (raw / "images" / "0005_100005.jpg").unlink()
    with pytest.raises(HashbenchError, match=r"1 of the 168 labelled images are missing .*images/0005_100005\.jpg"):
        prepare("nuswide21", raw, tmp_path / "out", queries=21, train=42)
    assert not (tmp_path / "out").exists()
    manifest = prepare("nuswide21", raw, tmp_path / "out", queries=21, train=42, skip_missing=True)
    assert manifest["counts"]["missing_skipped"] == 1 and manifest["counts"]["images"] == 167
    assert read_lists(tmp_path / "out")["test.txt"][0][0].startswith("../raw/images/")


def test_nuswide_quotas_must_divide_among_the_concepts(tmp_path):
    raw, _, _ = make_nuswide_release(tmp_path / "raw")
    with pytest.raises(HashbenchError, match="queries must be a positive multiple of the 21 classes; got 20"):
        prepare("nuswide21", raw, tmp_path / "out", queries=20, train=42)


def test_imagenet100_uses_hashnets_classes(tmp_path):
    wnids = imagenet100_classes()
    raw = make_imagenet_release(tmp_path / "raw", wnids)
    out = tmp_path / "out"
    manifest = prepare("imagenet100", raw, out, seed=0, queries=100, train=200)
    lists = read_lists(out)
    for rows in lists.values():
        for path, row in rows:
            wnid = path.split("/")[-2]
            assert len(row) == 100 and np.flatnonzero(row).tolist() == [wnids.index(wnid)]
    query = [p for p, _ in lists["test.txt"]]
    database = [p for p, _ in lists["database.txt"]]
    train = [p for p, _ in lists["train.txt"]]
    assert len(query) == 100 and all("/val/" in p for p in query)
    assert len(database) == 300 and all("/train/" in p for p in database)  # every train image, no other class
    assert not any("n99999999" in p for p in query + database)
    assert set(train) <= set(database) and len(train) == 200
    per_class = np.array([row for _, row in lists["train.txt"]]).sum(0)
    assert (per_class == 2).all()
    assert manifest["classes"] == wnids and manifest["options"]["classes"] == "imagenet100_classes.txt"


def test_imagenet100_class_list_is_hashnets():
    wnids = imagenet100_classes()
    assert len(wnids) == len(set(wnids)) == 100 and wnids == sorted(wnids)
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids[33] == "n02256656"  # thuml/HashNet pytorch/data/imagenet/train.txt line 1: image/n02256656_13626


def test_imagenet100_names_missing_class_folders(tmp_path):
    raw = make_imagenet_release(tmp_path / "raw", imagenet100_classes()[:3])
    with pytest.raises(HashbenchError, match=r"97 of the 100 classes have no folder"):
        prepare("imagenet100", raw, tmp_path / "out")


def test_cli_prepare_refuses_to_overwrite_and_custom_classes(tmp_path, cli):
    wnids = imagenet100_classes()[:3]
    raw = make_imagenet_release(tmp_path / "raw", wnids)
    (tmp_path / "classes.txt").write_text("# three classes\n" + "\n".join(wnids) + "\n")
    args = ["data", "prepare", "imagenet100", "--from", raw, "--out", tmp_path / "out", "--queries", 3,
            "--train", 6, "--classes", tmp_path / "classes.txt"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "train 6 / query 3 / database 9" in result.output
    before = (tmp_path / "out" / "test.txt").read_bytes()
    again = cli(*args, "--seed", 5)
    assert again.exit_code != 0 and "already holds train.txt, test.txt, database.txt, dataset.json; --force" in \
        again.output
    assert (tmp_path / "out" / "test.txt").read_bytes() == before
    forced = cli(*args, "--seed", 5, "--force")
    assert forced.exit_code == 0 and json.loads((tmp_path / "out" / "dataset.json").read_text())["seed"] == 5
    wrong = cli("data", "prepare", "coco", "--from", raw, "--out", tmp_path / "x", "--classes",
                tmp_path / "classes.txt")
    assert wrong.exit_code != 0 and "--classes applies to imagenet100 only" in wrong.output


def test_a_failed_write_leaves_no_manifest_and_no_temporary_files(tmp_path, monkeypatch):
    raw = make_coco_release(tmp_path / "raw")
    out = tmp_path / "out"
    prepare("coco", raw, out, queries=8, train=10)
    real = prepare_module.atomic_write
    calls = []

    @contextlib.contextmanager
    def failing(path, mode="w"):  # the second file fails halfway through its write
        calls.append(path)
        with real(path, mode) as handle:
            if len(calls) == 2:
                handle.write(b"half a list")
                raise OSError("disk full")
            yield handle

    monkeypatch.setattr(prepare_module, "atomic_write", failing)
    with pytest.raises(OSError, match="disk full"):
        prepare("coco", raw, out, seed=1, queries=8, train=10, force=True)
    assert not (out / "dataset.json").exists()  # lists without a manifest: never taken for a finished set
    assert sorted(p.name for p in out.iterdir()) == ["database.txt", "test.txt", "train.txt"]  # no temporary file
    assert b"half a list" not in (out / "test.txt").read_bytes()


def test_documented_sizes_match_the_protocols():
    from hashbench.data.datasets import _Cifar, _cifar_split
    from hashbench.registry import DATASETS

    class_ids = np.repeat(np.arange(10), 6000)
    subsets = np.where(np.arange(60_000) % 6000 < 5000, "train", "test")
    cifar = _Cifar(class_ids, subsets, [str(c) for c in range(10)], "synthetic", lambda: None)
    for name in ("cifar10", "cifar10-1", "cifar10-2", "cifar10-mini"):
        split, topk = _cifar_split(name, cifar, 0)
        protocol = PROTOCOLS[name]
        assert split.sizes() == protocol.sizes() and topk == protocol.topk
        inside = np.isin(split.train, split.database)
        assert inside.all() if protocol.train_in_database else not inside.any()
    for name in ("imagenet100", "coco", "nuswide21"):
        p = PROTOCOLS[name]
        assert f"train {p.train:,} / query {p.query:,} / database {p.database:,}; mAP@{p.topk}" in \
            DATASETS.get(name).summary
