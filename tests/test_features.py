"""Frozen-backbone features: cache keys, reuse, corruption; frozen and fine-tune runs on CIFAR-10."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_list_dataset
from PIL import Image

from hashbench.data import ImageTransform, load_dataset, sources
from hashbench.engine.features import FEATURES_VERSION, cached_features, feature_key, needed_items, weights_identity
from hashbench.models import build_backbone


def test_feature_key_covers_what_changes_features(cifar_tar):
    data = load_dataset("cifar10-mini", cifar_tar)
    backbone = build_backbone("resnet18", None)
    base = ImageTransform(64, backbone.mean, backbone.std)
    key = feature_key(data, "resnet18", backbone, base)
    assert key == feature_key(load_dataset("cifar10-mini", cifar_tar), "resnet18", backbone, base)
    assert key != feature_key(data, "resnet18", backbone, ImageTransform(96, backbone.mean, backbone.std))
    assert key != feature_key(data, "resnet50", backbone, base)
    other_weights = build_backbone("resnet18", None, None)
    other_weights.weights = "some.pth"
    assert key != feature_key(data, "resnet18", other_weights, base)
    assert key != feature_key(load_dataset("cifar10-mini", cifar_tar, split_seed=1), "resnet18", backbone, base)


def test_cache_is_reused_and_a_corrupt_file_is_rebuilt(tmp_path):
    data = load_dataset("digits")
    backbone = build_backbone("small_cnn")
    transform = ImageTransform(16, backbone.mean, backbone.std)
    first, cached = cached_features(data, "small_cnn", backbone, transform, device=torch.device("cpu"),
                                    folder=tmp_path)
    assert not cached and first.shape == (1797, 128)
    again, cached = cached_features(data, "small_cnn", backbone, transform, device=torch.device("cpu"),
                                    folder=tmp_path)
    assert cached and torch.equal(first, again)
    (cache_file,) = tmp_path.glob("features-*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])  # torn
    rebuilt, cached = cached_features(data, "small_cnn", backbone, transform, device=torch.device("cpu"),
                                      folder=tmp_path)
    assert not cached and torch.equal(first, rebuilt)


def test_features_of_files_follow_the_images_content(tmp_path, monkeypatch):
    """An image changed in place gets new features (the cache key digests the files' content);
    a file merely touched keeps them; each file is read once, then known by size and mtime."""
    from hashbench.engine import features as features_module

    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    root = make_list_dataset(tmp_path / "data", {"train": [[1, 0], [0, 1]], "test": [[1, 0]],
                                                 "database": [[0, 1], [1, 0]]})
    backbone = build_backbone("small_cnn")
    transform = ImageTransform(16, backbone.mean, backbone.std)

    def extract() -> tuple[torch.Tensor, bool]:
        return cached_features(load_dataset(f"listfile:{root}"), "small_cnn", backbone, transform,
                               device=torch.device("cpu"), folder=tmp_path / "features", progress=False)

    first, cached = extract()
    assert not cached
    hashed = []
    real_sha256 = features_module.file_sha256
    monkeypatch.setattr(features_module, "file_sha256", lambda path: hashed.append(path.name) or real_sha256(path))
    assert extract()[1] and hashed == []  # every file known by its size and mtime
    image = root / "img" / "test_0.png"
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(image)  # changed in place
    later = image.stat().st_mtime_ns + 10**9
    os.utime(image, ns=(later, later))
    changed, cached = extract()
    assert not cached and hashed == ["test_0.png"] and not torch.equal(changed, first)
    os.utime(root / "img" / "train_1.png", ns=(later, later))  # touched, same content: same key
    assert extract()[1] and hashed == ["test_0.png", "train_1.png"]


def test_frozen_runs_share_the_feature_cache(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    result = cli("run", "--methods", "csq,mlh", "--bits", "16", "--frozen-backbone", "--epochs", "3",
                 "--results", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "r").glob("**/result.json"))]
    assert [r["timing"]["features_cached"] for r in records] == [False, True]  # csq first, then mlh
    assert all(r["backbone"]["frozen"] for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--frozen-backbone", "--fine-tune"])
def test_cifar10_subset_with_pretrained_mobilenet(cli, tmp_path, monkeypatch, cifar_mini_tar, torch_home, mode):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    # fine-tuning 500 images needs a few more steps and a larger image (48 px fine-tuned stays near 0.2)
    epochs, size = ("2", "48") if mode == "--frozen-backbone" else ("3", "64")
    result = cli("run", "--methods", "csq", "--bits", "32", "--datasets", "cifar10-mini", "--data-root", cifar_mini_tar,
                 mode, "--epochs", epochs, "--set", f"image_size={size}", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cifar10-mini/csq/32/seed0/result.json").read_text())
    assert record["backbone"]["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert record["metrics"]["map_expected@2000"] > 0.2  # chance is 0.1


def test_weights_file_is_keyed_by_content_not_path(tmp_path, monkeypatch):
    data = load_dataset("digits")
    weights = tmp_path / "small_cnn.pth"
    torch.save(build_backbone("small_cnn").module.state_dict(), weights)
    monkeypatch.chdir(tmp_path)
    absolute, relative = build_backbone("small_cnn", None, weights), build_backbone("small_cnn", None, "small_cnn.pth")
    transform = ImageTransform(16, absolute.mean, absolute.std)
    assert absolute.weights != relative.weights  # the record keeps the path as given
    key = feature_key(data, "small_cnn", absolute, transform)
    assert key == feature_key(data, "small_cnn", relative, transform)
    torch.save(build_backbone("small_cnn").module.state_dict(), tmp_path / "other.pth")
    assert key != feature_key(data, "small_cnn", build_backbone("small_cnn", None, "other.pth"), transform)


def test_random_initial_weights_are_keyed_by_their_values():
    """Each seed initialises a random backbone differently: its features are its own."""
    data = load_dataset("digits")

    def key(seed: int, name: str = "small_cnn") -> str:
        torch.manual_seed(seed)
        backbone = build_backbone(name, None)
        return feature_key(data, name, backbone, ImageTransform(16, backbone.mean, backbone.std))

    assert key(0) == key(0) and key(0) != key(1)
    assert key(0, "raw") == key(1, "raw")  # no parameters: nothing random
    assert weights_identity(build_backbone("raw", None)) is None


def test_named_weights_keep_their_feature_key(cifar_tar):
    """Keys of caches written before weights files were keyed by content."""
    data = load_dataset("cifar10-mini", cifar_tar)
    backbone = build_backbone("mobilenet_v2", None)
    backbone.weights = "MobileNet_V2_Weights.IMAGENET1K_V1"  # as when built with those weights
    transform = ImageTransform(64, backbone.mean, backbone.std)
    spec = {"version": FEATURES_VERSION, "source": data.source,
            "items": hashlib.sha256(needed_items(data).tobytes()).hexdigest()[:16], "backbone": "mobilenet_v2",
            "weights": backbone.weights, "image_size": 64, "mean": list(backbone.mean), "std": list(backbone.std)}
    expected = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    assert feature_key(data, "mobilenet_v2", backbone, transform) == expected


def decode_and_count(root: str, counter: str, start) -> None:
    """One of two processes reading the same image tree at once (see below)."""
    real_decode = sources.decode_rgb

    def slow_counted_decode(source, where):
        with open(counter, "a") as handle:
            handle.write(f"{where}\n")
        time.sleep(0.01)
        return real_decode(source, where)

    sources.decode_rgb = slow_counted_decode
    start.wait(timeout=60)
    tree = sources.scan_tree(Path(root))
    assert sources.cached_pixels(tree, Path(root), "lock-test").shape == (len(tree.members), 3, 8, 8)


def test_two_processes_decode_a_pixel_cache_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    for i in range(30):
        folder = tmp_path / "tree" / "train" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(folder / f"{i}.png")
    context = multiprocessing.get_context("fork")  # no torch import in the children
    start = context.Barrier(2)
    counter = tmp_path / "decoded.txt"
    processes = [context.Process(target=decode_and_count, args=(str(tmp_path / "tree"), str(counter), start))
                 for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    assert len(counter.read_text().splitlines()) == 30  # decoded by one process, read from the cache by the other


def test_tarball_listing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    tar_path = tmp_path / "images.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in ("train/a/1.png", "train/b/2.png", "test/a/3.png"):
            info = tarfile.TarInfo(name)
            info.size = 0
            tar.addfile(info, io.BytesIO())
    first = sources.scan_tar(tar_path)
    (index,) = (tmp_path / "cache").glob("tar-index-*.json")
    assert json.loads(index.read_text()) == ["train/a/1.png", "train/b/2.png", "test/a/3.png"]
    monkeypatch.setattr(tarfile, "open", None)  # a second listing must come from the cache
    assert sources.scan_tar(tar_path).members == first.members
    index.write_text("[\"train/a/1.png\", ")  # torn: listed again
    monkeypatch.undo()
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    assert sources.scan_tar(tar_path).members == first.members
