"""hashbench data check: a good prepared folder passes; a deleted image, a truncated image, a
ragged label row and a query also in the database each fail, naming file and line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import make_coco_release, make_list_dataset
from PIL import Image

from hashbench.data import load_dataset
from hashbench.data.check import check_dataset, dataset_problems, screen_for_run
from hashbench.data.prepare import prepare
from hashbench.data.sources import read_list_file
from hashbench.validation import HashbenchError


@pytest.fixture
def prepared(tmp_path):
    """A small COCO-shaped folder written by prepare (images of 32 px, so a cut file is visibly truncated)."""
    raw = make_coco_release(tmp_path / "raw", size=32)
    prepare("coco", raw, tmp_path / "coco", queries=8, train=10)
    return tmp_path / "coco"


def line_of(folder, file, number):
    return (folder / file).read_text().splitlines()[number - 1]


def test_a_prepared_folder_passes(prepared, cli):
    result = cli("data", "check", f"listfile:{prepared}")
    assert result.exit_code == 0, result.output
    assert "problems: none" in result.output
    assert "sizes from dataset.json: train 10 (expected 10), query 8 (expected 8), database 22 (expected 22)" in \
        result.output
    assert "query and database share 0 items" in result.output and "10 of the 10 training items" in result.output
    for file in ("train.txt", "test.txt", "database.txt"):
        assert f"list {file}: sha256 {hashlib.sha256((prepared / file).read_bytes()).hexdigest()}" in result.output
    assert "person" in result.output  # per-class counts under the recorded class names


def test_the_preset_name_holds_a_folder_to_the_standard_sizes(prepared, cli):
    result = cli("data", "check", "coco", "--data-root", prepared)
    assert result.exit_code != 0
    assert f"{prepared / 'database.txt'}: database has 22 items; the standard coco protocol" in result.output
    assert "has 117,218" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: coco: 3 problems (3 wrong sizes)")


def test_a_deleted_image_is_named_by_file_and_line(prepared, cli):
    image = line_of(prepared, "database.txt", 4).split()[0]
    (prepared / image).unlink()
    result = cli("data", "check", f"listfile:{prepared}")
    assert result.exit_code != 0
    where = f"{prepared / 'database.txt'}:4"
    assert f"{where}: image file not found" in result.output
    assert "1 missing image" in result.output.splitlines()[-1] and where in result.output.splitlines()[-1]


def test_a_truncated_image_is_named_by_file_and_line(prepared, cli):
    image = prepared / line_of(prepared, "test.txt", 3).split()[0]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    result = cli("data", "check", f"listfile:{prepared}")
    assert result.exit_code != 0
    assert f"{prepared / 'test.txt'}:3: corrupt or truncated image" in result.output
    assert "1 unreadable image" in result.output.splitlines()[-1]
    assert cli("data", "check", f"listfile:{prepared}", "--no-decode").exit_code == 0  # existence only


def test_a_ragged_label_row_is_named_by_file_and_line(prepared, cli):
    lines = (prepared / "test.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0]
    (prepared / "test.txt").write_text("\n".join(lines) + "\n")
    result = cli("data", "check", f"listfile:{prepared}")
    assert result.exit_code != 0
    assert f"{prepared / 'test.txt'}:2: 79 labels, but earlier lines have 80" in result.output
    assert "changed list" in result.output  # and dataset.json's digest no longer matches


def test_a_query_in_the_database_is_an_overlap(prepared, cli):
    query = line_of(prepared, "test.txt", 5)
    with (prepared / "database.txt").open("a") as handle:
        handle.write(query + "\n")
    result = cli("data", "check", f"listfile:{prepared}")
    assert result.exit_code != 0
    assert f"{prepared / 'test.txt'}:5: query " in result.output
    assert f"is also in the database ({prepared / 'database.txt'}:23)" in result.output
    assert "1 query/database overlap" in result.output.splitlines()[-1]


def test_every_bad_line_is_collected_in_one_pass(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "train.txt"
    path.write_text("a.png 1 0\nb.png 0 1\na.png 1 0 1\na.png 2 0\na.png 0 1\n")
    found = []
    listed = read_list_file(path, tmp_path, problems=found)
    assert [(kind, where.rsplit(":", 1)[1]) for kind, where, _ in found] == [
        ("missing image", "2"), ("malformed line", "3"), ("malformed line", "4")]
    assert listed.lines == [1, 5] and listed.labels.tolist() == [[1, 0], [0, 1]]


def test_digits_check_passes_with_its_sizes(cli):
    result = cli("data", "check", "digits")
    assert result.exit_code == 0, result.output
    assert "train 1,597 (expected 1,597), query 200 (expected 200), database 1,597 (expected 1,597)" in result.output
    assert "1,597 of the 1,597 training items are in the database (protocol: all)" in result.output


def test_image_folder_check_finds_an_unreadable_file(tmp_path):
    rng = np.random.default_rng(0)
    for subset, count in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            for k in range(count):
                (tmp_path / subset / cls).mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / subset / cls / f"{k}.png")
    good = check_dataset(f"imagefolder:{tmp_path}")
    assert not good.problems and "sizes (no documented sizes to compare with): train 6, query 2, database 6" in \
        good.text()
    (tmp_path / "test" / "dog" / "0.png").write_bytes(b"not an image")
    bad = check_dataset(f"imagefolder:{tmp_path}")
    assert [p.kind for p in bad.problems] == ["unreadable image"] and "test/dog/0.png" in bad.problems[0].where


def test_a_role_without_any_label_is_a_problem_and_unlabelled_items_are_named(tmp_path, cli):
    make_list_dataset(tmp_path, {"train": [[0, 0]] * 3, "test": [[1, 0], [0, 0]], "database": [[1, 0], [0, 1]]})
    result = cli("data", "check", f"listfile:{tmp_path}", "--no-decode")
    assert result.exit_code != 0
    assert f"{tmp_path / 'train.txt'}: none of the 3 training items has a label" in result.output
    assert f"{tmp_path / 'test.txt'}:2: no label" in result.output  # no protocol: named all the same
    assert "1 unlabelled image, 1 no training labels" in result.output.splitlines()[-1]


def test_a_path_outside_the_folder_is_a_problem_unless_allowed(tmp_path, cli):
    folder = make_list_dataset(tmp_path / "d", {"train": [[1, 0], [0, 1]], "test": [[1, 0]], "database": [[0, 1]]})
    (tmp_path / "x.png").write_bytes((folder / "img" / "train_0.png").read_bytes())
    with (folder / "database.txt").open("a") as handle:
        handle.write(f"{tmp_path / 'x.png'} 1 0\n")
    result = cli("data", "check", f"listfile:{folder}")
    assert result.exit_code != 0
    assert f"{folder / 'database.txt'}:2: image path '{tmp_path / 'x.png'}' leads outside {folder}" in result.output
    assert "1 path outside root" in result.output.splitlines()[-1]
    allowed = cli("data", "check", f"listfile:{folder}", "--allow-outside-root")
    assert allowed.exit_code == 0, allowed.output
    assert f"1 images outside {folder} (--allow-outside-root)" in allowed.output


def test_run_screens_a_dataset_as_data_check_does(tmp_path):
    """One set of checks: what data check counts as problems, run refuses or warns about."""
    make_list_dataset(tmp_path, {"train": [[0, 0]] * 3, "test": [[1, 0], [0, 1]], "database": [[1, 0], [0, 1]]})
    with (tmp_path / "database.txt").open("a") as handle:
        handle.write("img/test_0.png 1 0\nimg/database_0.png 1 0\n")
    data = load_dataset(f"listfile:{tmp_path}")
    assert {p.kind for p in dataset_problems(data)} == {p.kind for p in check_dataset(f"listfile:{tmp_path}").problems}
    with pytest.raises(HashbenchError, match="none of the 3 training items has a label"):
        screen_for_run(data, supervised=True)
    database = tmp_path / "database.txt"
    assert screen_for_run(data, supervised=False) == [
        f"{tmp_path / 'test.txt'}:1: query {tmp_path / 'img/test_0.png'} is also in the database ({database}:3)",
        f"{database}:4: {tmp_path / 'img/database_0.png'} is listed twice in database (first at {database}:1)",
        f"{tmp_path / 'train.txt'}: none of the 3 training items has a label: a supervised method has nothing to "
        "learn from"]
    (tmp_path / "test.txt").write_text("img/test_0.png 0 0\nimg/test_1.png 0 0\n")
    with pytest.raises(HashbenchError, match=r"test\.txt: none of the 2 query items has a label: no query has "
                                             "a relevant item"):
        screen_for_run(load_dataset(f"listfile:{tmp_path}"), supervised=False)
