"""Binary indexes and ``hashbench search``: both backends agree, ties by database index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import invoke, make_list_dataset
from PIL import Image

from hashbench.cli import main
from hashbench.data.datasets import load_dataset
from hashbench.deploy.index import BinaryIndex, faiss_available
from hashbench.results import load_arrays, load_codes


def brute_force(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by (Hamming distance, database index), the stated order."""
    distances = (queries[:, None, :] != database[None]).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(database)), distances.shape), distances), axis=-1)[:, :k]
    return np.take_along_axis(distances, order, 1), order


@pytest.mark.parametrize("bits", [8, 12, 64, 100])
def test_kernel_matches_brute_force_with_ties(bits: int) -> None:
    rng = np.random.default_rng(bits)
    database = rng.random((3000, bits)) < 0.5
    database[1000:1400] = database[5]  # many exact duplicates: ties at every distance
    queries = np.concatenate([rng.random((20, bits)) < 0.5, database[[5, 1200, 2999]]])
    found = BinaryIndex(database, backend="kernel").search(queries, 10)
    distances, indices = brute_force(queries, database, 10)
    assert np.array_equal(found.distances, distances) and np.array_equal(found.indices, indices)
    assert found.indices[-3][0] == 5 and found.indices[-2][0] == 5  # a duplicate's lowest index comes first


def test_k_beyond_database_returns_all() -> None:
    database = np.random.default_rng(0).random((7, 16)) < 0.5
    found = BinaryIndex(database, backend="kernel").search(database[:2], 10)
    assert found.indices.shape == (2, 7) and sorted(found.indices[0]) == list(range(7))


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is an optional extra: pip install 'hashbench[search]'")
@pytest.mark.parametrize("bits", [16, 64, 70])
def test_faiss_agrees_with_kernel_on_ties(bits: int) -> None:
    rng = np.random.default_rng(1)
    database = rng.random((20000, bits)) < 0.5
    database[::3] = database[0]  # a third of the database tied with item 0
    queries = np.concatenate([rng.random((30, bits)) < 0.5, database[:4]])
    kernel = BinaryIndex(database, backend="kernel").search(queries, 10)
    faiss = BinaryIndex(database, backend="faiss").search(queries, 10)
    assert np.array_equal(kernel.distances, faiss.distances)
    assert np.array_equal(kernel.indices, faiss.indices)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search") / "results"
    invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--results", root, "--no-progress")
    return root / "digits" / "dpsh" / "16" / "seed0"


def first_of_its_code(folder: Path) -> int:
    """A database item that no earlier database item shares a code with: by the stated tie
    order it must come first in its own results."""
    codes = load_codes(folder)
    _, first = np.unique(codes["database_codes"], axis=0, return_index=True)
    return int(codes["database_index"][np.sort(first)[len(first) // 2]])


def test_search_item_finds_itself_first(run: Path) -> None:
    item = first_of_its_code(run)
    result = invoke("search", run, "--item", item, "--topk", "5", "--json")
    found = json.loads(result.output)
    label = str(int(load_dataset("digits").labels[item].argmax()))
    assert len(found) == 1 and found[0]["query"] == {"item": item, "path": None, "labels": [label]}
    top = found[0]["results"]
    assert len(top) == 5 and top[0]["item"] == item and top[0]["distance"] == 0
    assert [r["distance"] for r in top] == sorted(r["distance"] for r in top)
    assert top[0]["labels"] == [label]
    text = invoke("search", run, "--item", item, "--topk", "3").output
    assert text.splitlines()[0] == f"query: item {item}  label {label}" and f"item {item}" in text.splitlines()[1]


def test_an_item_query_of_a_list_file_dataset_names_its_file_and_labels(tmp_path: Path) -> None:
    """--item N counts train.txt's lines, then test.txt's, then database.txt's: N = 9 is the
    second query here, printed with its file and labels (text and JSON)."""
    data = make_list_dataset(tmp_path / "data", {"train": [[1, 0], [0, 1]] * 4, "test": [[1, 0], [0, 1]],
                                                 "database": [[1, 0], [0, 1]] * 3})
    result = invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--datasets", f"listfile:{data}",
                    "--backbone", "small_cnn", "--set", "image_size=16", "--results", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    (record,) = (tmp_path / "r").glob("**/result.json")
    found = json.loads(invoke("search", record.parent, "--item", "9", "--topk", "2", "--json").output)
    assert found[0]["query"] == {"item": 9, "path": str(data / "img" / "test_1.png"), "labels": ["1"]}
    text = invoke("search", record.parent, "--item", "9", "--topk", "2").output
    assert text.splitlines()[0] == f"query: item 9  {data / 'img' / 'test_1.png'}  label 1"


def test_search_image_file_equals_search_item(run: Path, tmp_path: Path) -> None:
    item = first_of_its_code(run)
    pixels = load_dataset("digits").images.pixels[item].permute(1, 2, 0).numpy()
    path = tmp_path / "digit.png"
    Image.fromarray(pixels).save(path)  # lossless, at the stored 8 px: decoded as training saw it
    by_file = json.loads(invoke("search", run, "--image", path, "--json").output)[0]["results"]
    by_item = json.loads(invoke("search", run, "--item", item, "--json").output)[0]["results"]
    assert by_file == by_item


def test_search_backends_agree_on_a_run(run: Path) -> None:
    if not faiss_available():
        pytest.skip("faiss-cpu is an optional extra: pip install 'hashbench[search]'")
    outputs = [invoke("search", run, "--item", "3", "--item", "40", "--topk", "25", "--backend", backend,
                      "--json").output for backend in ("kernel", "faiss")]
    assert outputs[0] == outputs[1]


def test_index_file_holds_database_codes(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "db.index"
    out.write_bytes(b"an older index")
    invoke("index", run, "--out", out, "--force")
    assert np.array_equal(load_arrays(out)["codes"], load_codes(run)["database_codes"])


@pytest.mark.parametrize(("content", "expected"), [(b"not an image", "corrupt or truncated image"), (None, "missing")])
def test_bad_query_image_is_one_line_error(run: Path, tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "query.jpg"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["search", str(run), "--image", str(path)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and expected in result.output and str(path) in result.output


def test_search_needs_one_kind_of_query(run: Path) -> None:
    result = CliRunner().invoke(main, ["search", str(run)])
    assert result.exit_code == 1 and "--image PATH or as --item N" in result.output
    result = CliRunner().invoke(main, ["search", str(run), "--item", "100000"])
    assert result.exit_code == 1 and "item must be an index" in result.output


def test_report_draws_retrieval_examples_or_says_why_not(run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hashbench.analysis import figures
    from hashbench.analysis.report import build_report

    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])  # the other figures: test_report
    results = run.parents[3]
    written = build_report(results, tmp_path / "report", tsne_methods=[])
    assert (tmp_path / "report" / "figures" / "retrieval_digits_16.png") in written
    assert "## Retrieval examples" in (tmp_path / "report" / "README.md").read_text()
    # the same run whose images cannot be loaded: a line in the page, no failure
    moved = tmp_path / "moved" / "digits" / "dpsh" / "16" / "seed0"
    moved.mkdir(parents=True)
    for name in ("result.json", "codes.npz"):
        (moved / name).write_bytes((run / name).read_bytes())
    record = json.loads((moved / "result.json").read_text())
    record["config"]["dataset"] = f"listfile:{tmp_path / 'absent'}"
    (moved / "result.json").write_text(json.dumps(record))
    written = build_report(tmp_path / "moved", tmp_path / "report2", tsne_methods=[])
    page = (tmp_path / "report2" / "README.md").read_text()
    assert not any("retrieval" in p.name for p in written)
    assert "digits, 16 bits: no retrieval examples, the images are not available" in page


def test_index_never_replaces_a_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "kept.index"
    out.write_bytes(b"the user's file")
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(main, ["index", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 1 and result.output.strip() == f"Error: {out} exists; --force replaces it"
    assert out.read_bytes() == b"the user's file"
