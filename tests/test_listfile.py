"""DeepHash-style list files: parsing and errors that name file and line."""

from __future__ import annotations

import json
import re

import pytest
from helpers import make_list_dataset
from PIL import Image

from hashbench.config import RunConfig, config_fingerprint
from hashbench.data import load_dataset
from hashbench.data.datasets import LoadOptions
from hashbench.data.sources import read_list_file, release_folder
from hashbench.validation import HashbenchError


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


@pytest.mark.parametrize("image", ["../outside.png", "img/../../outside.png", "ABSOLUTE"])
def test_an_image_path_outside_the_list_folder_is_refused_unless_allowed(tmp_path, image):
    folder = tmp_path / "lists"
    (folder / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "img" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    image = str(tmp_path / "outside.png") if image == "ABSOLUTE" else image
    path = folder / "train.txt"
    path.write_text(f"img/a.png 1 0\n{image} 0 1\n")
    with pytest.raises(HashbenchError, match=f"{path}:2: image path .* leads outside {folder} "
                                             r"\(allow_outside_root=true accepts it\)"):
        read_list_file(path, folder)
    allowed = read_list_file(path, folder, allow_outside_root=True)
    assert allowed.lines == [1, 2] and allowed.outside == 1


def test_the_release_folder_of_a_prepared_folder_is_inside(tmp_path):
    """``data prepare --from RAW --out OUT`` lists ../RAW/...: the release that dataset.json records."""
    (tmp_path / "raw").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "raw" / "a.png")
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "train.txt"
    path.write_text("../raw/a.png 1 0\n")
    with pytest.raises(HashbenchError, match="leads outside"):
        read_list_file(path, tmp_path / "out")
    manifest = {"source": {"folder": str((tmp_path / "raw").resolve())}}
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(manifest))
    assert release_folder(tmp_path / "out") == (tmp_path / "raw").resolve()
    assert read_list_file(path, tmp_path / "out", release=release_folder(tmp_path / "out")).outside == 0


def test_allow_outside_root_through_load_dataset_and_the_config(tmp_path):
    make_list_dataset(tmp_path / "d", {"train": [[1, 0], [0, 1]], "test": [[1, 0]], "database": [[0, 1]]})
    (tmp_path / "shared.png").write_bytes((tmp_path / "d" / "img" / "train_0.png").read_bytes())
    with (tmp_path / "d" / "database.txt").open("a") as handle:
        handle.write("../shared.png 1 0\n")
    with pytest.raises(HashbenchError, match=re.escape("database.txt:2: image path '../shared.png' leads outside")):
        load_dataset(f"listfile:{tmp_path / 'd'}")
    data = load_dataset(f"listfile:{tmp_path / 'd'}", options=LoadOptions(allow_outside_root=True))
    assert data.split.sizes()["database"] == 2
    config = RunConfig(method="csq", dataset="digits", bits=16).as_dict()
    older = {k: v for k, v in config.items() if k != "allow_outside_root"}  # a record from before the key
    assert config["allow_outside_root"] is False and config_fingerprint(config) == config_fingerprint(older)


def test_a_quoted_path_may_hold_spaces(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "my image.png")
    path = tmp_path / "train.txt"
    path.write_text('"my image.png" 0 1\n  "my image.png"   1 0  \n')
    listed = read_list_file(path, tmp_path)
    assert listed.paths == [tmp_path / "my image.png"] * 2 and listed.labels.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize(("content", "message"), [
    ("a.png 1 0\nmy image.png 0 1\n", r"got 'image.png' before them: image paths with spaces must be quoted, "
                                      r'e.g. "my image.jpg" 0 1'),
    ('a.png 1 0\n"my image.png 0 1\n', "unclosed double quote in the image path"),
    ('a.png 1 0\n"my image.png"0 1\n', "expected a space after the quoted image path"),
])
def test_a_space_in_an_image_path_needs_quotes(tmp_path, content, message):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "train.txt"
    path.write_text(content)
    with pytest.raises(HashbenchError, match=f"{path}:2: .*{message}"):
        read_list_file(path, tmp_path)


def test_a_path_cut_at_a_space_on_the_first_line_does_not_set_the_label_width(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "train.txt"
    path.write_text("my image.png 0 1\na.png 1 0\n")
    found = []
    listed = read_list_file(path, tmp_path, problems=found)
    assert [where for _, where, _ in found] == [f"{path}:1"] and listed.lines == [2]


def test_a_list_file_that_is_not_utf8_names_its_line(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "train.txt"
    path.write_bytes("a.png 1 0\ncaf\u00e9.png 0 1\n".encode("latin-1"))
    with pytest.raises(HashbenchError, match=rf"{path}:2: not UTF-8 text \(save the list file as UTF-8\)"):
        read_list_file(path, tmp_path)
    path.write_bytes("\ufeffa.png 1 0\n".encode())  # a byte-order mark, as some editors write
    assert read_list_file(path, tmp_path).paths == [tmp_path / "a.png"]
