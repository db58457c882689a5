"""Dataset protocols: exact sizes, disjointness and seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest

from hashbench.data import load_dataset
from hashbench.data.datasets import LoadOptions, digits_table
from hashbench.validation import HashbenchError

SIZES = {
    "cifar10": {"query": 1000, "train": 5000, "database": 54000, "topk": 54000},
    "cifar10-1": {"query": 1000, "train": 5000, "database": 59000, "topk": 59000},
    "cifar10-2": {"query": 10000, "train": 50000, "database": 50000, "topk": 50000},
}


@pytest.mark.parametrize("protocol", SIZES)
def test_cifar10_protocol_sizes(protocol, cifar_tar):
    data = load_dataset(protocol, cifar_tar, split_seed=0)
    split = data.split
    expected = SIZES[protocol]
    assert split.sizes() == {k: expected[k] for k in ("train", "query", "database")}
    assert data.topk == expected["topk"]
    assert data.labels.shape == (60000, 10)
    query, train, database = set(split.query), set(split.train), set(split.database)
    assert not query & database and not query & train
    if protocol == "cifar10":
        assert not train & database
        assert len(query | train | database) == 60000
    elif protocol == "cifar10-1":
        assert train <= database and len(query | database) == 60000
    else:
        assert train == database
    class_ids = data.labels.argmax(1).numpy()
    assert np.bincount(class_ids[split.query], minlength=10).tolist() == [expected["query"] // 10] * 10
    assert np.bincount(class_ids[split.train], minlength=10).tolist() == [expected["train"] // 10] * 10


def test_splits_are_seeded(cifar_tar):
    a = load_dataset("cifar10", cifar_tar, split_seed=0).split
    b = load_dataset("cifar10", cifar_tar, split_seed=0).split
    c = load_dataset("cifar10", cifar_tar, split_seed=1).split
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()
    np.testing.assert_array_equal(a.query, b.query)


def test_cifar_found_inside_a_data_root_folder(cifar_tar):
    assert load_dataset("cifar10", cifar_tar.parent).split.sizes()["query"] == 1000


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(HashbenchError, match="CIFAR-10 not found under data root"):
        load_dataset("cifar10", tmp_path / "nowhere")


def test_digits_split():
    data = load_dataset("digits")
    sizes = data.split.sizes()
    assert sizes == {"train": 1597, "query": 200, "database": 1597}
    assert not set(data.split.query) & set(data.split.database)
    assert len(data.images) == 1797


def test_digits_read_directly_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits

    images, class_ids = digits_table()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(class_ids, reference.target)


def test_download_offline_fails_with_one_clear_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(HashbenchError, match=r"the download into .*cifar10 failed: <urlopen error"):
        load_dataset("cifar10", tmp_path, options=LoadOptions(download=True))
