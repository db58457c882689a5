"""`hashbench report` on small synthetic results folders: files, numbers, tie rules, tags,
ablations, determinism, failures and file names."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hashbench.eval import evaluate
from hashbench.results import records_frame, run_dir, save_codes, write_record

METHODS = ["csq", "mlh", "mlh-center"]
ABLATION_OF = {"mlh-center": "mlh"}
BITS = [16, 32]
SEEDS = [0, 1]
TAG = "equal-head"
TAGGED_METHODS = ["csq", "mlh"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def fake_run(root: Path, method: str, bits: int, seed: int, quality: float, *, dataset: str = "toy",
             tag: str | None = None) -> dict[str, float]:
    """Codes = class prototype with a fraction of bits flipped; a better method flips fewer.

    The database is sorted by descending class and most queries are of class 0, so breaking
    ties by database index ranks relevant items last and ``map@K`` falls below ``map_expected@K``.
    """
    rng = np.random.default_rng(zlib.crc32(f"{dataset}/{tag}/{method}/{bits}/{seed}".encode()))
    prototypes = rng.random((4, bits)) < 0.5
    q_cls = rng.choice(4, size=40, p=[0.7, 0.1, 0.1, 0.1])
    d_cls = np.sort(rng.integers(0, 4, 300))[::-1]
    q = prototypes[q_cls] ^ (rng.random((40, bits)) < quality)
    d = prototypes[d_cls] ^ (rng.random((300, bits)) < quality)
    ql, dl = np.eye(4, dtype=bool)[q_cls], np.eye(4, dtype=bool)[d_cls]
    folder = run_dir(root, dataset, method, bits, seed, tag=tag)
    save_codes(folder, query_codes=q, database_codes=d, query_labels=ql, database_labels=dl)
    by_index = evaluate(q, d, ql, dl, topks=(100,), ties="index")
    expected = evaluate(q, d, ql, dl, topks=(100,), ties="expected")
    write_record(folder, {
        "schema": 2, "method": method, "dataset": dataset, "bits": bits, "seed": seed, "tag": tag, "status": "done",
        "method_info": {"ablation_of": ABLATION_OF.get(method), "supervised": True},
        "backbone": {"name": "small_cnn", "weights": None},
        "protocol": {"topk": 100},
        "metrics": {"topk": 100, **by_index.as_dict(), "map_expected@100": expected.maps[100]},
        "history": [{"epoch": e + 1, "loss": 1.0 / (e + 1)} for e in range(3)],
        "timing": {"train_s": 1.0},
    })
    return {"index": by_index.maps[100], "expected": expected.maps[100]}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Untagged runs of METHODS, a tagged grid with other numbers, and two failed runs (one without method_info)."""
    root = tmp_path_factory.mktemp("results")
    maps, tagged = {}, {}
    for i, method in enumerate(METHODS):
        for bits in BITS:
            for seed in SEEDS:
                maps[(method, bits, seed)] = fake_run(root, method, bits, seed, quality=0.05 + 0.1 * i)
    for method in TAGGED_METHODS:
        for bits in BITS:
            tagged[(method, bits, 0)] = fake_run(root, method, bits, 0, quality=0.3, tag=TAG)
    failed = run_dir(root, "toy", "dpsh", 16, 0)
    write_record(failed, {"method": "dpsh", "dataset": "toy", "bits": 16, "seed": 0, "status": "failed",
                          "reason": "non-finite loss nan at step 3 (epoch 0)", "timing": {}})
    write_record(run_dir(root, "toy", "csq", 32, 2), {
        "schema": 2, "method": "csq", "dataset": "toy", "bits": 32, "seed": 2, "tag": None, "status": "failed",
        "method_info": {"ablation_of": None, "supervised": True}, "reason": "killed", "timing": {}})
    return root, maps, tagged


def table_rows(markdown: str) -> dict[str, str]:
    """Method -> its table line."""
    return {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}


def check_cells(line: str, method: str, maps: dict, ties: str) -> None:
    """The line's cells are mean ± std over SEEDS of the ``ties`` mAP, one per bit length."""
    cells = re.findall(r"(\d\.\d{4}) ± (\d\.\d{4}) \((\d)\)", line)
    assert len(cells) == len(BITS)
    for (mean, std, n), bits in zip(cells, BITS, strict=True):
        values = [maps[(method, bits, s)][ties] for s in SEEDS]
        assert float(mean) == pytest.approx(np.mean(values), abs=1e-4)
        assert float(std) == pytest.approx(np.std(values, ddof=1), abs=1e-4)
        assert int(n) == len(SEEDS)


@pytest.mark.slow
def test_report_files_numbers_and_determinism(cli, results, tmp_path):
    root, maps, tagged = results
    assert any(abs(v["index"] - v["expected"]) > 1e-3 for v in maps.values())  # the two tie rules differ
    out = tmp_path / "report"
    result = cli("report", "--results", root, "--out", out)
    assert result.exit_code == 0, result.output
    for stem in ("map", "ablation", f"map-{TAG}"):
        for suffix in ("md", "tex", "csv"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0
    figures = out / "figures"
    expected = [f"pr_toy_{b}" for b in BITS] + [f"precision_at_n_toy_{b}" for b in BITS]
    expected += [f"code_distribution_toy_{b}" for b in BITS] + [f"training_toy_{b}" for b in BITS]
    expected += [f"tsne_toy_{m}_32" for m in METHODS]
    for stem in expected:
        with Image.open(figures / f"{stem}.png") as image:
            image.verify()
            assert image.size[0] > 100 and image.size[1] > 100
        assert (figures / f"{stem}.pdf").read_bytes().startswith(b"%PDF")

    frame = pd.read_csv(out / "map.csv")
    assert list(frame.columns) == ["method", "dataset", "bits", "seed", "metric", "value"]
    assert len(frame.groupby(["method", "bits", "seed"])) == len(maps)  # untagged runs only
    for (method, bits, seed), values in maps.items():
        run = frame[(frame.method == method) & (frame.bits == bits) & (frame.seed == seed)]
        for metric, ties in (("map@100", "index"), ("map_expected@100", "expected")):
            assert run[run.metric == metric]["value"].item() == pytest.approx(values[ties], abs=1e-6)

    table = (out / "map.md").read_text()
    assert "mAP@100" in table and "small_cnn" in table
    assert "ties at equal Hamming distance: expectation over random orders" in table
    assert "ties at equal Hamming distance: expectation over random orders" in (out / "map.tex").read_text()
    lines = table_rows(table)
    for method in METHODS:
        check_cells(lines[method], method, maps, "expected")
    assert "**" in lines["csq"] and "<u>" in lines["mlh"]  # best bold, second underlined
    assert "1 failed" in lines["dpsh"]  # shown, not dropped
    assert "(2) [1 failed]" in lines["csq"]  # two finished seeds and a failed third in one cell
    assert r"\toprule" in (out / "map.tex").read_text()

    ablation = table_rows((out / "ablation.md").read_text())
    assert list(ablation) == ["Method", "mlh", "mlh-center"]  # the base first, then its variants
    check_cells(ablation["mlh-center"], "mlh-center", maps, "expected")

    tag_table = (out / f"map-{TAG}.md").read_text()
    assert TAG in tag_table.splitlines()[0]
    assert list(table_rows(tag_table)) == ["Method", *TAGGED_METHODS]
    tag_frame = pd.read_csv(out / f"map-{TAG}.csv")
    for (method, bits, seed), values in tagged.items():
        row = tag_frame[(tag_frame.method == method) & (tag_frame.bits == bits) & (tag_frame.seed == seed)
                        & (tag_frame.metric == "map@100")]
        assert row["value"].item() == pytest.approx(values["index"], abs=1e-6)

    readme = (out / "README.md").read_text()
    assert "non-finite loss" in readme and "figures/pr_toy_16.png" in readme
    assert f"## mAP by Hamming ranking, tag `{TAG}`" in readme and "## Ablation of mlh" in readme

    before = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    assert cli("report", "--results", root, "--out", out).exit_code == 0
    after = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    del before["README.md"], after["README.md"]  # carries the date
    assert before == after

    by_index = tmp_path / "by-index"
    assert cli("report", "--results", root, "--out", by_index, "--ties", "index").exit_code == 0
    table = (by_index / "map.md").read_text()
    assert "ties at equal Hamming distance: broken by database index" in table
    lines = table_rows(table)
    for method in METHODS:
        check_cells(lines[method], method, maps, "index")
    assert (by_index / "map.csv").read_bytes() == (out / "map.csv").read_bytes()  # every metric, either way


@pytest.mark.slow
def test_report_file_names_are_safe(cli, tmp_path):
    """Dataset and tag names become file names only through one slug: no ':' or '/' in any name."""
    root, out = tmp_path / "results", tmp_path / "report"
    dataset, tag = "listfile:/some/dir", "equal head/v2"
    for method in ("csq", "mlh", "mlh-center"):
        fake_run(root, method, 16, 0, quality=0.1, dataset=dataset)
    fake_run(root, "csq", 16, 0, quality=0.1, dataset=dataset, tag=tag)
    result = cli("report", "--results", root, "--out", out)
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.output.splitlines()]
    assert {p.resolve() for p in written} == {p.resolve() for p in out.rglob("*") if p.is_file()}
    for path in written:
        assert path.is_file() and path.stat().st_size > 0
        assert all(SAFE_NAME.match(part) for part in path.relative_to(out).parts), path
    names = {p.name for p in written}
    assert {"map.md", "ablation.md", "map-equal_head_v2.md", "pr_listfile_some_dir_16.png"} <= names
    assert dataset in (out / "map.md").read_text()


def test_report_filters(cli, results, tmp_path):
    root, _, _ = results
    out = tmp_path / "only16"
    assert cli("report", "--results", root, "--out", out, "--bits", "16").exit_code == 0
    assert "32 bits" not in (out / "map.md").read_text()
    bad = cli("report", "--results", root, "--out", out, "--datasets", "nope")
    assert bad.exit_code != 0 and "no records match" in bad.output


def test_records_frame_normalises_map_columns():
    """Tables read ``map_index``/``map_expected`` whatever K is; a schema-1 record fills the one its ties rule gave."""
    def record(schema: int, metrics: dict, ties: str = "index") -> dict:
        return {"schema": schema, "method": "csq", "dataset": "toy", "bits": 16, "seed": 0, "status": "done",
                "config": {"ties": ties}, "metrics": {"topk": 500, **metrics}}

    frame = records_frame([
        (Path("a"), record(2, {"map@500": 0.5, "map_expected@500": 0.6, "map@1000": 0.1})),
        (Path("b"), record(1, {"map": 0.7, "map@all": 0.7}, ties="index")),
        (Path("c"), record(1, {"map": 0.8, "map@500": 0.8}, ties="expected")),
    ])
    assert frame["map_index"].tolist()[:2] == [0.5, 0.7] and np.isnan(frame["map_index"][2])
    assert frame["map_expected"][0] == 0.6 and np.isnan(frame["map_expected"][1]) and frame["map_expected"][2] == 0.8
    assert frame["tag"].isna().all() and frame["ablation_of"].isna().all()  # no tag or method_info: neither
