"""DeepHash-style list files: parsing and errors that name file and line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashbench.data import load_dataset
from hashbench.data.sources import read_list_file
from hashbench.validation import HashbenchError


def make_list_dataset(root, labels_by_role, size=12):
    """Write tiny images and train/test/database list files under ``root``."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for role, rows in labels_by_role.items():
        lines = []
        for i, row in enumerate(rows):
            name = f"img/{role}_{i}.png"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name)
            lines.append(name + " " + " ".join(str(v) for v in row))
        (root / f"{role}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_single_and_multi_label_files(tmp_path):
    make_list_dataset(tmp_path / "single", {"train": [[1, 0, 0], [0, 1, 0]], "test": [[0, 0, 1]],
                                            "database": [[1, 0, 0]] * 3})
    data = load_dataset(f"listfile:{tmp_path / 'single'}")
    assert data.split.sizes() == {"train": 2, "query": 1, "database": 3}
    assert not data.multi_label and data.num_classes == 3
    make_list_dataset(tmp_path / "multi", {"train": [[1, 1, 0], [0, 1, 0]], "test": [[0, 1, 1]],
                                           "database": [[1, 0, 1]]})
    data = load_dataset(f"listfile:{tmp_path / 'multi'}")
    assert data.multi_label
    assert data.labels[data.split.query[0]].tolist() == [0, 1, 1]
    image, error = data.images[0]
    assert image.shape == (3, 256, 256) and error == ""


@pytest.mark.parametrize(("content", "line", "message"), [
    ("a.png 1 0\nb.png 1 0 1\n", 2, "3 labels, but earlier lines have 2"),
    ("a.png 1 0\nb.png 2 0\n", 2, "labels must be 0 or 1"),
    ("a.png 1 0\nmissing.png 0 1\n", 2, "image file not found"),
    ("a.png\n", 1, "expected an image path"),
])
def test_malformed_list_file_names_file_and_line(tmp_path, content, line, message):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    path = tmp_path / "train.txt"
    path.write_text(content)
    with pytest.raises(HashbenchError, match=f"{path}:{line}: .*{message}"):
        read_list_file(path, tmp_path)


def test_missing_list_folder(tmp_path):
    with pytest.raises(HashbenchError, match="data root for listfile"):
        load_dataset(f"listfile:{tmp_path / 'absent'}")
