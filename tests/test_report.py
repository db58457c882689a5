"""`hashbench report` on a small synthetic results folder: files, numbers, determinism, failures."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hashbench.eval import evaluate
from hashbench.results import run_dir, save_codes, write_record

METHODS = ["csq", "mlh", "mlh-center"]
BITS = [16, 32]
SEEDS = [0, 1]


def fake_run(root, method, bits, seed, quality):
    """Codes = class prototype with a fraction of bits flipped; a better method flips fewer."""
    rng = np.random.default_rng(hash((method, bits, seed)) % 2**32)
    prototypes = rng.random((4, bits)) < 0.5
    q_cls, d_cls = rng.integers(0, 4, 40), rng.integers(0, 4, 300)
    q = prototypes[q_cls] ^ (rng.random((40, bits)) < quality)
    d = prototypes[d_cls] ^ (rng.random((300, bits)) < quality)
    ql, dl = np.eye(4, dtype=bool)[q_cls], np.eye(4, dtype=bool)[d_cls]
    folder = run_dir(root, "toy", method, bits, seed)
    save_codes(folder, query_codes=q, database_codes=d, query_labels=ql, database_labels=dl)
    result = evaluate(q, d, ql, dl, topks=(100,))
    write_record(folder, {
        "method": method, "dataset": "toy", "bits": bits, "seed": seed, "status": "done",
        "backbone": {"name": "small_cnn", "weights": None},
        "protocol": {"topk": 100},
        "metrics": {"map": result.maps[100], "topk": 100, **result.as_dict()},
        "history": [{"epoch": e + 1, "loss": 1.0 / (e + 1)} for e in range(3)],
        "timing": {"train_s": 1.0},
    })
    return result.maps[100]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    maps = {}
    for i, method in enumerate(METHODS):
        for bits in BITS:
            for seed in SEEDS:
                maps[(method, bits, seed)] = fake_run(root, method, bits, seed, quality=0.05 + 0.1 * i)
    failed = run_dir(root, "toy", "dpsh", 16, 0)
    write_record(failed, {"method": "dpsh", "dataset": "toy", "bits": 16, "seed": 0, "status": "failed",
                          "reason": "non-finite loss nan at step 3 (epoch 0)", "timing": {}})
    write_record(run_dir(root, "toy", "csq", 32, 2), {"method": "csq", "dataset": "toy", "bits": 32, "seed": 2,
                                                      "status": "failed", "reason": "killed", "timing": {}})
    return root, maps


@pytest.mark.slow
def test_report_files_numbers_and_determinism(cli, results, tmp_path):
    root, maps = results
    out = tmp_path / "report"
    result = cli("report", "--results", root, "--out", out)
    assert result.exit_code == 0, result.output
    for stem in ("map", "ablation"):
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
    for (method, bits, seed), value in maps.items():
        row = frame[(frame.method == method) & (frame.bits == bits) & (frame.seed == seed) & (frame.metric == "map")]
        assert row["value"].item() == pytest.approx(value, abs=1e-6)

    table = (out / "map.md").read_text()
    assert "mAP@100" in table and "small_cnn" in table
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    for method in METHODS:
        cells = re.findall(r"(\d\.\d{4}) ± (\d\.\d{4}) \((\d)\)", lines[method])
        assert len(cells) == 2
        for (mean, std, n), bits in zip(cells, BITS, strict=True):
            values = [maps[(method, bits, s)] for s in SEEDS]
            assert float(mean) == pytest.approx(np.mean(values), abs=1e-4)
            assert float(std) == pytest.approx(np.std(values, ddof=1), abs=1e-4)
            assert int(n) == 2
    assert "**" in lines["csq"] and "<u>" in lines["mlh"]  # best bold, second underlined
    assert "1 failed" in lines["dpsh"]  # shown, not dropped
    assert "(2) [1 failed]" in lines["csq"]  # two finished seeds and a failed third in one cell
    assert r"\toprule" in (out / "map.tex").read_text()
    readme = (out / "README.md").read_text()
    assert "non-finite loss" in readme and "figures/pr_toy_16.png" in readme

    before = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    assert cli("report", "--results", root, "--out", out).exit_code == 0
    after = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    del before["README.md"], after["README.md"]  # carries the date
    assert before == after


def test_report_filters(cli, results, tmp_path):
    root, _ = results
    out = tmp_path / "only16"
    assert cli("report", "--results", root, "--out", out, "--bits", "16").exit_code == 0
    assert "32 bits" not in (out / "map.md").read_text()
    bad = cli("report", "--results", root, "--out", out, "--datasets", "nope")
    assert bad.exit_code != 0 and "no records match" in bad.output
