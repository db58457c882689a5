"""`hashbench report` on small synthetic results folders: files, numbers, tie rules, tags,
ablations, determinism, failures and file names."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, fake_run
from PIL import Image

from hashbench.analysis.tables import markdown_code
from hashbench.eval import evaluate
from hashbench.results import iter_records, records_frame, run_dir, save_codes, write_record

METHODS = ["csq", "mlh", "mlh-center"]
BITS = [16, 32]
SEEDS = [0, 1]
TAG = "equal-head"
TAGGED_METHODS = ["csq", "mlh"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


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


def table_rows(markdown: str, floor: bool = False) -> dict[str, str]:
    """Method -> its table line (the "random codes" floor row only with ``floor``; no group label row)."""
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines()
            if line.startswith("| ") and any(cell.strip() for cell in line.split("|")[2:-1])}
    return rows if floor else {k: v for k, v in rows.items() if k != "*random codes*"}


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
    runs = frame[frame.method != "random-codes"]
    assert len(runs.groupby(["method", "bits", "seed"])) == len(maps)  # untagged runs only
    for (method, bits, seed), values in maps.items():
        run = frame[(frame.method == method) & (frame.bits == bits) & (frame.seed == seed)]
        for metric, ties in (("map@100", "index"), ("map_expected@100", "expected")):
            assert run[run.metric == metric]["value"].item() == pytest.approx(values[ties], abs=1e-6)

    table = (out / "map.md").read_text()
    assert "mAP@100" in table and "small_cnn" in table
    assert "toy: mAP@100; relevant = same class" in table  # the records do not say; the saved labels do
    assert "ties at equal Hamming distance: expectation over random orders" in table
    assert "ties at equal Hamming distance: expectation over random orders" in (out / "map.tex").read_text()
    lines = table_rows(table)
    for method in METHODS:
        check_cells(lines[method], method, maps, "expected")
    assert "**" in lines["csq"] and "<u>" in lines["mlh"]  # best bold, second underlined
    assert "1 failed" in lines["dpsh"]  # shown, not dropped
    assert "(2) [1 failed]" in lines["csq"]  # two finished seeds and a failed third in one cell
    assert r"\toprule" in (out / "map.tex").read_text()
    floor_row = table_rows(table, floor=True)["*random codes*"]
    floors = [float(cell.strip().strip("*")) for cell in floor_row.split("|")[2:-1]]
    assert list(frame[frame.method == "random-codes"]["value"].round(4)) == floors
    for floor, bits in zip(floors, BITS, strict=True):  # good codes clear the floor
        assert all(floor < maps[(m, bits, s)]["expected"] for m in METHODS for s in SEEDS)

    ablation = table_rows((out / "ablation.md").read_text())
    assert list(ablation) == ["Method", "mlh", "mlh-center"]  # the base first, then its variants
    assert "*random codes*" in table_rows((out / "ablation.md").read_text(), floor=True)
    check_cells(ablation["mlh-center"], "mlh-center", maps, "expected")

    tag_table = (out / f"map-{TAG}.md").read_text()
    assert TAG in tag_table.splitlines()[0]
    assert list(table_rows(tag_table)) == ["Method", *TAGGED_METHODS]
    assert "*random codes*" in table_rows(tag_table, floor=True)
    tag_frame = pd.read_csv(out / f"map-{TAG}.csv")
    for (method, bits, seed), values in tagged.items():
        row = tag_frame[(tag_frame.method == method) & (tag_frame.bits == bits) & (tag_frame.seed == seed)
                        & (tag_frame.metric == "map@100")]
        assert row["value"].item() == pytest.approx(values["index"], abs=1e-6)

    readme = (out / "README.md").read_text()
    assert "non-finite loss" in readme and "figures/pr_toy_16.png" in readme
    assert f"## mAP by Hamming ranking, tag `{TAG}`" in readme and "## Ablation of mlh" in readme

    before = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    assert cli("report", "--results", root, "--out", out, "--no-figures").exit_code == 0
    after = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".md", ".tex", ".csv")}
    del before["README.md"], after["README.md"]  # carries the date
    assert before == after

    by_index = tmp_path / "by-index"
    assert cli("report", "--results", root, "--out", by_index, "--ties", "index", "--no-figures").exit_code == 0
    assert not (by_index / "figures").exists() and "figures/" not in (by_index / "README.md").read_text()
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
    assert cli("report", "--results", root, "--out", out, "--bits", "16", "--no-figures").exit_code == 0
    assert "32 bits" not in (out / "map.md").read_text()
    bad = cli("report", "--results", root, "--out", out, "--datasets", "nope")
    assert bad.exit_code != 0 and "no records match" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize(("option", "drawn"), [("csq,mlh", ["csq", "mlh"]), ("none", [])])
def test_tsne_methods_limits_the_t_sne_plots(cli, results, tmp_path, monkeypatch, option, drawn):
    from hashbench.analysis import figures

    titles = []
    monkeypatch.setattr(figures, "tsne_figure",
                        lambda codes, title, **kwargs: titles.append(title) or figures.plt.figure())
    root, _, _ = results
    out = tmp_path / "report"
    # t-SNE is drawn at the longest code length alone: the other one's figures add nothing here
    assert cli("report", "--results", root, "--out", out, "--tsne-methods", option, "--bits", "32").exit_code == 0
    assert sorted(title.split(":")[1].split(",")[0].strip() for title in titles) == drawn
    assert sorted(p.stem for p in (out / "figures").glob("tsne_*.png")) == [f"tsne_toy_{m}_32" for m in drawn]


def test_label_free_methods_get_a_table_of_their_own(cli, tmp_path):
    root, out = tmp_path / "results", tmp_path / "reports"
    fake_run(root, "csq", 16, 0, quality=0.1)
    fake_run(root, "itq", 16, 0, quality=0.2, supervised=False)
    assert cli("report", "--results", root, "--out", out, "--no-figures").exit_code == 0
    supervised, label_free = (out / "map.md").read_text(), (out / "map_unsupervised.md").read_text()
    assert "supervised methods (trained with labels)" in supervised and "| csq" in supervised
    assert "itq" not in supervised
    assert "unsupervised methods (no labels in training)" in label_free and "| itq" in label_free
    assert "csq" not in label_free
    page = (out / "README.md").read_text()
    assert page.index("supervised methods (trained") < page.index("unsupervised methods (no labels")

    assert cli("report", "--results", root, "--out", out, "--no-figures", "--baseline", "itq").exit_code == 0
    means = {m: pd.read_csv(out / f"{stem}.csv").query(f"method == '{m}' and metric == 'map_expected@100'")
             ["value"].mean() for m, stem in (("csq", "map"), ("itq", "map_unsupervised"))}
    gain = table_rows((out / "gain-over-itq.md").read_text())
    assert set(gain) == {"Method", "csq"}
    assert float(gain["csq"].split("|")[2]) == pytest.approx(100 * (means["csq"] - means["itq"]), abs=0.051)
    assert "Gain over itq" in (out / "README.md").read_text()
    failed = cli("report", "--results", root, "--out", out, "--baseline", "lsh")
    assert failed.exit_code != 0 and "--baseline lsh has no untagged runs" in failed.output


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


MULTI_LABEL_METHODS = ["csq", "dpsh", "mlh"]
COMMON_LABELS = [0.7, 0.7, 0.7, 0.1, 0.1]  # 3 of 5 labels on most images: nearly every pair shares one


def fake_multi_label_run(root: Path, dataset: str, method: str, *, state_multi_label: bool = True) -> None:
    """Random 16-bit codes on multi-label data where most pairs share a label; a record may
    omit ``protocol.multi_label``, as a hand-made one could."""
    rng = np.random.default_rng(zlib.crc32(f"{dataset}/{method}".encode()))
    ql, dl = rng.random((30, 5)) < COMMON_LABELS, rng.random((200, 5)) < COMMON_LABELS
    ql[ql.sum(1) == 0, 0] = True
    dl[dl.sum(1) == 0, 0] = True
    q, d = rng.random((30, 16)) < 0.5, rng.random((200, 16)) < 0.5
    folder = run_dir(root, dataset, method, 16, 0)
    save_codes(folder, query_codes=q, database_codes=d, query_labels=ql, database_labels=dl)
    result = evaluate(q, d, ql, dl, topks=(100,), ties="expected")
    protocol = {"topk": 100, "class_names": list("abcde"), **({"multi_label": True} if state_multi_label else {})}
    write_record(folder, {
        "schema": 2, "method": method, "dataset": dataset, "bits": 16, "seed": 0, "tag": None, "status": "done",
        "method_info": {"ablation_of": None, "supervised": True}, "backbone": {"name": "small_cnn", "weights": None},
        "protocol": protocol, "history": [], "timing": {},
        "metrics": {"topk": 100, "map@100": result.maps[100], "map_expected@100": result.maps[100]}})


@pytest.mark.slow
def test_multi_label_report_states_the_rule_and_a_high_floor(cli, tmp_path, monkeypatch):
    """Multi-label tables, page and figures say "shares a label"; single-label ones "same class";
    the random-code floor is a separate unranked row (and CSV rows), high on multi-label data."""
    import hashbench.analysis.figures as figures

    root, out = tmp_path / "results", tmp_path / "report"
    for method in MULTI_LABEL_METHODS:
        fake_multi_label_run(root, "mosaic", method)
        fake_run(root, method, 16, 0, quality=0.1, dataset="shapes",
                 protocol={"multi_label": False, "class_names": ["disc", "ring", "star", "wave"]})
    fake_multi_label_run(root, "mosaic-old", "csq", state_multi_label=False)
    tsne_calls, distance_calls = [], []
    monkeypatch.setattr(figures, "tsne_figure",
                        lambda codes, title, **kwargs: tsne_calls.append((title, kwargs)) or figures.plt.figure())
    monkeypatch.setattr(figures, "code_distribution_figure",
                        lambda codes, colours, title, **kwargs: distance_calls.append((title, kwargs))
                        or figures.plt.figure())
    result = cli("report", "--results", root, "--out", out)
    assert result.exit_code == 0, result.output

    multi_rule, single_rule = "relevant = shares at least one label with the query", "relevant = same class"
    table, tex, readme = (out / "map.md").read_text(), (out / "map.tex").read_text(), (out / "README.md").read_text()
    for text in (table, tex):
        assert f"mosaic: mAP@100; {multi_rule}" in text
        assert f"mosaic-old: mAP@100; {multi_rule}" in text  # no multi_label in the record: its labels decide
        assert f"shapes: mAP@100; {single_rule}" in text
    assert f"- mosaic: {multi_rule}" in readme and f"- shapes: {single_rule}" in readme  # on the page's head too
    assert r"\textit{random codes}" in tex

    rows = table_rows(table, floor=True)
    columns = [cell.strip() for cell in rows["Method"].split("|")[2:-1]]
    floors = dict(zip(columns, [cell.strip() for cell in rows["*random codes*"].split("|")[2:-1]], strict=True))
    assert all(cell.startswith("*") and "**" not in cell and "<u>" not in cell for cell in floors.values())
    mosaic, shapes = float(floors["mosaic 16 bits"].strip("*")), float(floors["shapes 16 bits"].strip("*"))
    assert mosaic > 0.8 and shapes < 0.5  # most multi-label pairs share a label: a high floor
    for column in ("mosaic 16 bits", "shapes 16 bits"):  # the floor takes no rank from the methods
        cells = [rows[m].split("|")[2 + columns.index(column)].strip() for m in MULTI_LABEL_METHODS]
        assert sum(c.startswith("**") for c in cells) == 1 and sum(c.startswith("<u>") for c in cells) == 1

    frame = pd.read_csv(out / "map.csv")
    floor_rows = frame[frame.method == "random-codes"]
    assert set(zip(floor_rows.dataset, floor_rows.bits, floor_rows.metric, strict=True)) == {
        ("mosaic", 16, "map_expected@100"), ("mosaic-old", 16, "map_expected@100"),
        ("shapes", 16, "map_expected@100")}
    assert floor_rows.seed.isna().all() and frame[frame.method != "random-codes"].seed.notna().all()
    assert floor_rows[floor_rows.dataset == "mosaic"]["value"].item() == pytest.approx(mosaic, abs=1e-4)

    flags = {title.split(", ")[1]: kwargs["multi_label"] for title, kwargs in tsne_calls}
    assert flags == {"mosaic": True, "mosaic-old": True, "shapes": False}
    names = {title.split(", ")[1]: kwargs["class_names"] for title, kwargs in tsne_calls}
    assert names["shapes"] == ["disc", "ring", "star", "wave"]  # the record's class names reach the legend
    assert {title: kwargs["multi_label"] for title, kwargs in distance_calls} == {
        "Code distances (mosaic, 16 bits)": True, "Code distances (mosaic-old, 16 bits)": True,
        "Code distances (shapes, 16 bits)": False}


def toy_codes(multi_label: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.random((60, 3)) < 0.6 if multi_label else np.eye(3, dtype=bool)[rng.integers(0, 3, 60)]
    labels[labels.sum(1) == 0, 0] = True
    return {"database_codes": rng.random((60, 16)) < 0.5, "database_labels": labels,
            "query_codes": rng.random((5, 16)) < 0.5, "query_labels": labels[:5]}


@pytest.mark.parametrize(("multi_label", "names"), [(False, ["same class", "different class"]),
                                                    (True, ["shares a label", "shares none"])])
def test_code_distance_legend_names_the_pairs_it_counts(multi_label, names):
    from hashbench.analysis.figures import code_distribution_figure, method_styles

    codes = toy_codes(multi_label)
    figure = code_distribution_figure({"csq": codes, "mlh": codes}, method_styles({"csq": "center", "mlh": "mutual"}),
                                      "t", multi_label=multi_label)
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == names


def test_every_method_keeps_one_distinct_style_and_panels_group_families():
    """At 20+ methods no two look alike: (colour, marker) is unique per method, colours are
    distinct within a family's panel, and each panel draws its family in colour over the
    other families in grey."""
    from hashbench.analysis.figures import CONTEXT_GREY, method_styles, pr_figure
    from hashbench.eval import evaluate
    from hashbench.registry import METHODS

    families = {name: METHODS.get(name).family for name in METHODS.names()}
    families.update({f"plugin{i}": "pairwise" for i in range(25)})  # more than twice the palette
    styles = method_styles(families)
    looks = {(s.colour, s.marker, s.filled, s.linestyle) for s in styles.values()}
    assert len(looks) == len(styles)
    for family in set(families.values()):
        members = [styles[m] for m in families if families[m] == family]
        assert len({(s.colour, s.filled, s.linestyle) for s in members}) == len(members)
        assert len({s.marker for s in members}) == 1
    assert styles == method_styles(dict(reversed(list(families.items()))))  # not order-dependent

    codes = toy_codes(False)
    result = evaluate(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                      codes["database_labels"], topks=(60,))
    shown = {"csq": "center", "orthohash": "center", "dpsh": "pairwise", "ce": "classification"}
    figure = pr_figure({m: [result] for m in shown}, method_styles(shown), "t")
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert list(panels) == ["pairwise", "center", "classification"]
    center = panels["center"]
    assert sorted(t.get_text() for t in center.get_legend().get_texts())[:2] == ["csq", "orthohash"]
    greys = [line for line in center.get_lines() if line.get_color() == CONTEXT_GREY]
    assert len(greys) == 2 and len(center.get_lines()) == 5  # and the random ranking's line


def test_tsne_colours_by_class_or_by_number_of_labels():
    """Single-label: a class legend (names, else indices). Multi-label: a colour bar of label
    counts, said in the title, never a legend of one arbitrary label per point."""
    from hashbench.analysis.figures import tsne_figure

    def legend(figure) -> list[str]:
        return sorted(text.get_text() for text in figure.axes[0].get_legend().get_texts())

    named = tsne_figure(toy_codes(False), "t", multi_label=False, class_names=["cat", "dog", "ship"])
    assert legend(named) == ["cat", "dog", "ship"] and "colour: class" in named.axes[0].get_title()
    assert legend(tsne_figure(toy_codes(False), "t", multi_label=False)) == ["0", "1", "2"]
    multi = tsne_figure(toy_codes(True), "t", multi_label=True, class_names=["cat", "dog", "ship"])
    assert multi.axes[0].get_legend() is None and len(multi.axes) == 2  # the plot and its colour bar
    assert "colour: number of labels" in multi.axes[0].get_title()
    assert multi.axes[1].get_ylabel() == "labels per image"


def test_a_record_archived_while_records_are_listed_is_skipped(tmp_path, monkeypatch):
    """Another process's --force moves a record to history/ between the listing and the read."""
    for seed in (0, 1):
        write_record(run_dir(tmp_path, "toy", "csq", 16, seed),
                     {"method": "csq", "dataset": "toy", "bits": 16, "seed": seed, "status": "done"})
    real_glob = Path.glob

    def listing_then_archive(self, pattern):
        paths = list(real_glob(self, pattern))
        (run_dir(tmp_path, "toy", "csq", 16, 0) / "result.json").unlink()
        return iter(paths)

    monkeypatch.setattr(Path, "glob", listing_then_archive)
    assert [record["seed"] for _, record in iter_records(tmp_path)] == [1]


def test_record_text_is_escaped_in_markdown_and_latex(cli, tmp_path):
    """A dataset name or failure reason from a record cannot add a table column, run a script
    or break out of a line, in .md or .tex."""
    root, out = tmp_path / "results", tmp_path / "report"
    dataset = "listfile:/d|x <script>_#$%{}"
    for method in ("csq", "mlh"):
        fake_run(root, method, 16, 0, quality=0.1, dataset=dataset)
    write_record(run_dir(root, dataset, "dpsh", 16, 0), {
        "method": "dpsh", "dataset": dataset, "bits": 16, "seed": 0, "status": "failed", "timing": {},
        "reason": "a | b <img src=x onerror=alert(1)>\n# not a heading [link](javascript:x)"})
    result = cli("report", "--results", root, "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    table, page = (out / "map.md").read_text(), (out / "README.md").read_text()
    for text in (table, page):
        assert "<script>" not in text and "<img" not in text and not re.search(r"(?<!\\)\[link", text)
        assert "\n# not a heading" not in text
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert {len(re.split(r"(?<!\\)\|", line)) for line in rows} == {4}  # Method and one column, no more
    shown = r"listfile:/d\|x &lt;script&gt;\_#\$%{}"
    assert f"| {shown} 16 bits |" in table and f"- {shown}: relevant" in page
    assert r"- dpsh toy" not in page and r"a \| b &lt;img src=x onerror=alert(1)&gt; # not a heading \[link\]" in page
    assert r"\multicolumn{1}{c}{listfile:/d|x <script>\_\#\$\%\{\}}" in (out / "map.tex").read_text()


def test_markdown_code_spans_hold_any_backticks():
    assert markdown_code("hashbench report") == "`hashbench report`"
    assert markdown_code("a`b``c") == "```a`b``c```" and markdown_code("`x") == "`` `x ``"
    assert markdown_code("two\nlines") == "`two lines`"


@pytest.mark.slow
def test_a_named_folder_dataset_is_shown_by_its_name(cli, tmp_path):
    """NAME=listfile:DIR: folders, console lines, tables and figure files say NAME, never the
    path; the record keeps the whole spec, and search still finds the files."""
    from helpers import make_list_dataset

    data = make_list_dataset(tmp_path / "data", {"train": [[1, 0], [0, 1]] * 4, "test": [[1, 0], [0, 1]],
                                                 "database": [[1, 0], [0, 1]] * 6})
    spec = f"mine=listfile:{data}"
    result = cli("run", "--config", REPO / "experiments" / "digits.toml", "--methods", "dpsh,csq", "--bits", "16",
                 "--epochs", "1", "--datasets", spec, "--backbone", "small_cnn", "--set", "image_size=16",
                 "--results", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "[1/2] dpsh mine 16 bits seed 0: mAP@" in result.output and str(data) not in result.output
    folder = run_dir(tmp_path / "r", "mine", "dpsh", 16, 0)
    record = read_json(folder / "result.json")
    assert record["dataset"] == "mine" and record["config"]["dataset"] == spec and record["protocol"]["name"] == "mine"
    assert str(data) in record["protocol"]["source"]
    report = cli("report", "--results", tmp_path / "r", "--out", tmp_path / "report", "--tsne-methods", "none")
    assert report.exit_code == 0, report.output
    table = (tmp_path / "report" / "map.md").read_text()
    assert "| Method | mine 16 bits |" in table and str(data) not in table
    assert (tmp_path / "report" / "figures" / "pr_mine_16.png").is_file()
    found = cli("search", folder, "--item", "8", "--topk", "1", "--json")
    assert str(data / "img" / "test_0.png") in found.output


def labelled_ticks(ax, axis: str) -> list[str]:
    """The tick labels a reader sees on one axis of a drawn panel (major and minor, in view)."""
    ax.figure.canvas.draw()
    which = ax.xaxis if axis == "x" else ax.yaxis
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    return [tick.label1.get_text() for tick in [*which.get_major_ticks(), *which.get_minor_ticks()]
            if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high]


def test_family_panels_label_their_axes_and_show_chance():
    """The lowest panel of each column of a PR or P@N figure labels its x ticks (also above an
    empty cell of the bottom row), and every panel draws the random ranking's precision, the relevance base rate of the
    queries; a training-loss panel shows at least two labelled ticks on its y axis."""
    from hashbench.analysis.figures import method_styles, pr_figure, precision_at_n_figure, training_curves_figure

    codes = toy_codes(True)
    result = evaluate(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                      codes["database_labels"], topks=(60,))
    base_rate = ((codes["query_labels"].astype(int) @ codes["database_labels"].T.astype(int)) > 0).mean()
    families = {"dpsh": "pairwise", "csq": "center", "ce": "classification", "itq": "shallow"}
    styles = method_styles(families)
    for figure in (pr_figure({m: [result] for m in families}, styles, "t"),
                   precision_at_n_figure({m: [result] for m in families}, styles, "t")):
        panels = [ax for ax in figure.axes if ax.get_visible()]
        assert len(panels) == 4 and len(figure.axes) == 6  # a 2x3 grid: two empty cells in the bottom row
        lowest = {ax.get_subplotspec().colspan.start: ax for ax in panels}  # each column's last panel
        assert [ax.get_title() for ax in lowest.values()] == ["shallow", "center", "classification"]
        for ax in lowest.values():  # the x axis is shared: the lowest panel of each column labels it
            assert labelled_ticks(ax, "x"), ax.get_title()
        for ax in panels:
            (chance,) = [line for line in ax.get_lines() if line.get_label().startswith("random ranking")]
            assert np.allclose(chance.get_ydata(), base_rate)
            assert chance.get_label() in [text.get_text() for text in ax.get_legend().get_texts()]
    records = [{"method": method, "seed": 0, "history": [{"epoch": e + 1, "loss": loss} for e, loss in enumerate(ys)]}
               for method, ys in (("dpsh", [0.8, 0.3, 0.12, 0.05]), ("csq", [5.0, 0.5, 0.02, 0.001]),
                                  ("ce", [0.9, 0.7, -0.1, -0.2]))]
    figure = training_curves_figure(records, method_styles({"dpsh": "pairwise", "csq": "center",
                                                            "ce": "classification"}), "t")
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert panels["pairwise"].get_yscale() == "linear" and panels["center"].get_yscale() == "log"
    assert panels["classification"].get_yscale() == "linear"  # a negative loss has no place on a log axis
    for ax in panels.values():
        assert len(labelled_ticks(ax, "y")) >= 2, ax.get_title()


# The page's layout (issues 27.5 and 28.8): results first, an appendix page, no machine paths,
# tables apart, row groups and duplicate rows labelled, numbers in words generated.

def patch_record(folder: Path, **changes) -> None:
    """Change top-level keys of a fake run's record (give it a config, as a real run's has, say)."""
    write_record(folder, {**read_json(folder / "result.json"), **changes})


def layout_results(root: Path) -> None:
    """Untagged runs of four supervised methods (an ablation among them) and ITQ, a tag for the
    main page, a check tag for the appendix, a validation tag, and a failed run."""
    for i, method in enumerate(["dpsh", "csq", "mlh", "mlh-center"]):
        for bits in BITS:
            for seed in SEEDS:
                fake_run(root, method, bits, seed, quality=0.05 + 0.08 * i)
    for bits in BITS:
        for seed in SEEDS:
            fake_run(root, "itq", bits, seed, quality=0.35, supervised=False)
    for method in TAGGED_METHODS:
        fake_run(root, method, 16, 0, quality=0.2, tag=TAG)
        fake_run(root, method, 16, 0, quality=0.25, tag="epochs-x2")
    fake_run(root, "dpsh", 16, 0, quality=0.3, tag="validation-curve", protocol={"validation": 10})
    write_record(run_dir(root, "toy", "dpsh", 32, 2), {
        "method": "dpsh", "dataset": "toy", "bits": 32, "seed": 2, "status": "failed", "timing": {},
        "reason": f"data root not found: {root}/data."})


NOTES = "## How to read these numbers\n\n- Protocols: hand-written guidance.\n"
APPENDIX_NOTES = ("### Convergence check\n| method | x2 |\n|---|---|\n| csq | +0.4 |\n"
                  "| method | x2 |\n|---|---|\n| mlh | -1.2 |\n")


def build_layout_report(tmp_path: Path, monkeypatch, **options) -> Path:
    """The report of :func:`layout_results`, figures and retrieval examples stubbed (their own tests draw them)."""
    from hashbench.analysis import figures, retrieval_examples
    from hashbench.analysis.report import build_report

    monkeypatch.setattr(figures, "write_figures",
                        lambda records, raw, out, **kwargs: [out / "figures" / "pr_toy_16.png"])
    monkeypatch.setattr(retrieval_examples, "write_retrieval_figures",
                        lambda records, raw, out, codes_of: ([out / "figures" / "retrieval_toy_16.png"], []))
    root, out = tmp_path / "results", tmp_path / "report"
    layout_results(root)
    build_report(root, out, **{"notes": NOTES, "appendix_notes": APPENDIX_NOTES, "appendix_tags": ["epochs-x2"],
                               "baseline": "itq", **options})
    return out


def test_page_shows_the_results_tables_first_and_checks_on_an_appendix_page(tmp_path, monkeypatch):
    out = build_layout_report(tmp_path, monkeypatch)
    page = (out / "README.md").read_text()
    order = ["# hashbench report", "25 finished, 1 not", "## mAP by Hamming ranking: supervised methods",
             "## mAP by Hamming ranking: unsupervised methods", "## Gain over itq", "## Ablation of mlh",
             f"## mAP by Hamming ranking, tag `{TAG}`", "## Summary", "## Unfinished runs",
             "## How to read these numbers", "## Figures", "figures/pr_toy_16.png", "## Retrieval examples",
             "figures/retrieval_toy_16.png"]
    assert [page.index(heading) for heading in order] == sorted(page.index(heading) for heading in order)
    first_table = page.index("\n| Method |")
    assert page.index("runs of 5 methods on toy at 16 and 32 bits, seeds 0, 1 and 2") < first_table
    assert page.index("- toy: relevant = same class") < first_table  # the relevance rule still opens the page
    assert "](appendix.md)" in page and "Convergence check" not in page
    assert "tag `epochs-x2`\n" not in page and "Validation mAP" not in page  # their tables are on the appendix

    appendix = (out / "appendix.md").read_text()
    assert appendix.startswith("# hashbench report: appendix") and "](README.md)" in appendix
    order = ["### Convergence check", "| mlh | -1.2 |", "## mAP by Hamming ranking, tag `epochs-x2`",
             "## Validation mAP (held-out training items as queries, not the test queries), tag `validation-curve`",
             "[map-validation-curve.tex](map-validation-curve.tex)"]
    assert [appendix.index(text) for text in order] == sorted(appendix.index(text) for text in order)
    assert f"tag `{TAG}`" not in appendix and "## Summary" not in appendix

    from hashbench.analysis.report import build_report

    plain = tmp_path / "plain"
    for method in ("csq", "mlh"):
        fake_run(plain / "results", method, 16, 0, quality=0.1)
        fake_run(plain / "results", method, 16, 0, quality=0.1, tag="epochs-x2")
    build_report(plain / "results", plain / "report", figures=False)  # nothing for an appendix: no page, no link
    plain_page = (plain / "report" / "README.md").read_text()
    assert not (plain / "report" / "appendix.md").exists() and "appendix" not in plain_page
    assert "## mAP by Hamming ranking, tag `epochs-x2`" in plain_page


def test_no_written_file_names_a_folder_of_the_machine(cli, tmp_path, monkeypatch):
    """The command line, the results folder, a failure reason and a weights file are shown
    relative to the working directory when inside it, else as …/<last part>."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    root = tmp_path / "elsewhere" / "results"  # outside the working directory
    layout_results(root)
    patch_record(run_dir(root, "toy", "csq", 16, 0),
                 backbone={"name": "resnet50", "weights": str(tmp_path / "weights" / "r50.pth")})
    (work / "notes.md").write_text(NOTES)
    (work / "appendix-notes.md").write_text(APPENDIX_NOTES)
    argv = ["hashbench", "report", "--results", str(root), "--out", str(work / "reports"), "--notes",
            str(work / "notes.md"), f"--appendix-notes={work / 'appendix-notes.md'}", "--no-figures", "--baseline",
            "itq"]
    monkeypatch.setattr("sys.argv", argv)  # what the page shows as its command
    result = cli(*argv[1:])
    assert result.exit_code == 0, result.output
    written = [path for path in (work / "reports").rglob("*") if path.is_file()]
    assert {"README.md", "appendix.md", "map.md", "map.tex", "map.csv"} <= {path.name for path in written}
    machine = {str(tmp_path), str(tmp_path.resolve()), str(work), str(work.resolve())}
    for path in written:
        text = path.read_text()
        assert not [folder for folder in machine if folder in text], path.name
    page = (work / "reports" / "README.md").read_text()
    assert ("`hashbench report --results …/results --out reports --notes notes.md --appendix-notes=appendix-notes.md "
            "--no-figures --baseline itq` from the records in `…/results`") in page
    assert "dpsh toy 32 bits seed 2: failed: data root not found: …/data." in page
    assert "backbone resnet50 (…/r50.pth), small_cnn (random init)" in (work / "reports" / "map.md").read_text()


def test_display_path_and_without_machine_paths(tmp_path):
    from hashbench.analysis.tables import display_path, without_machine_paths

    assert display_path(tmp_path / "a" / "b.md", tmp_path) == "a/b.md" and display_path("a/../b", tmp_path) == "b"
    assert display_path(tmp_path, tmp_path) == "." and display_path(tmp_path.parent / "x", tmp_path) == "…/x"
    text = f"read {tmp_path}/r.json and /etc/x/y.pth, not listfile:/data/m, https://a.org/b or 0.5 / 0.6 or 1/2."
    assert without_machine_paths(text, tmp_path) == ("read r.json and …/y.pth, not listfile:/data/m, https://a.org/b "
                                                     "or 0.5 / 0.6 or 1/2.")
    assert without_machine_paths(f"--out={tmp_path}/reports --results /srv/r.", tmp_path) == \
        "--out=reports --results …/r."


def table_blocks_apart(markdown: str) -> list[str]:
    """The lines of ``markdown`` where a table touches what is around it: a header row right under a
    non-blank line, or a line without a pipe right under a table row."""
    from hashbench.analysis.tables import DELIMITER_ROW

    lines = markdown.splitlines()
    touching = [lines[i - 1] for i in range(1, len(lines)) if DELIMITER_ROW.match(lines[i])
                and i >= 2 and lines[i - 2].strip()]
    touching += [lines[i] for i in range(1, len(lines)) if lines[i - 1].startswith("|") and lines[i].strip()
                 and "|" not in lines[i]]
    return touching


def test_tables_on_the_pages_never_touch(tmp_path, monkeypatch):
    """Each table stands apart (a blank line above and below), also those of notes files that
    put two tables one under the other: a Markdown reader sees every one of them."""
    markdown = pytest.importorskip("markdown")
    from hashbench.analysis.tables import DELIMITER_ROW

    out = build_layout_report(tmp_path, monkeypatch, notes=NOTES + APPENDIX_NOTES + "after the tables\n")
    for name in ("README.md", "appendix.md"):
        text = (out / name).read_text()
        assert not table_blocks_apart(text), name
        headers = sum(bool(DELIMITER_ROW.match(line)) for line in text.splitlines())
        assert headers >= 3 and markdown.markdown(text, extensions=["tables"]).count("<table>") == headers, name
    assert "| csq | +0.4 |\n\n| method | x2 |" in (out / "appendix.md").read_text()


def test_separate_tables_leaves_code_and_separated_tables_alone():
    from hashbench.analysis.tables import separate_tables

    apart = "text\n\n| a |\n|---|\n| 1 |\n\n| b |\n|:---:|\n| 2 |\n\n---\nend"
    assert separate_tables(apart) == apart
    fenced = "```\n| a |\n|---|\n| a |\n|---|\n```"
    assert separate_tables(fenced) == fenced
    assert separate_tables("# t\n| a |\n|---|\n| 1 |\n| b |\n|---|\n| 2 |\nend") == \
        "# t\n\n| a |\n|---|\n| 1 |\n\n| b |\n|---|\n| 2 |\n\nend"


def test_rows_are_grouped_under_their_family(tmp_path, monkeypatch):
    out = build_layout_report(tmp_path, monkeypatch)

    def first_cells(name: str) -> list[str]:
        return [line.split("|")[1].strip() for line in (out / name).read_text().splitlines() if line.startswith("| ")]

    table = (out / "map.md").read_text()
    assert first_cells("map.md") == ["Method", "**pairwise**", "dpsh", "**center**", "csq", "**mutual**", "mlh",
                                     "mlh-center", "*random codes*"]
    group_row = next(line for line in table.splitlines() if line.startswith("| **center**"))
    assert [cell.strip() for cell in group_row.split("|")[2:-1]] == ["", ""]  # one empty cell per column
    assert ("- rows grouped by method family: pairwise: pairwise or triplet similarity; center: hash centers, "
            "proxies, codebooks; mutual: MLH") in table
    tex = (out / "map.tex").read_text()
    assert "\\midrule\n\\multicolumn{3}{l}{\\textit{center}} \\\\\ncsq & " in tex
    # ITQ, the baseline, is no row of the gain table: nor is its family's label
    assert first_cells("gain-over-itq.md") == ["Method", "**pairwise**", "dpsh", "**center**", "csq", "**mutual**",
                                               "mlh", "mlh-center"]
    assert "shallow" not in (out / "gain-over-itq.md").read_text()
    assert first_cells("map_unsupervised.md") == ["Method", "itq", "*random codes*"]  # one family: no label
    assert first_cells("ablation.md") == ["Method", "mlh", "mlh-center", "*random codes*"]  # one ablated method


def test_a_method_run_under_two_configs_in_one_table_gets_a_row_for_each(tmp_path):
    """One tag holding DSDH at two learning rates (seeds 0 and 1 of one cell): two rows, each
    naming its lr, never one mean over both; runtime keys and settings that differ between
    datasets (K) split nothing; a run without a config keeps its method's name."""
    from hashbench.analysis.report import build_report

    root, tag = tmp_path / "results", "validation-curve"
    maps = {}
    for seed, lr in ((0, 0.1), (1, 0.2)):
        maps[lr] = fake_run(root, "dsdh", 16, seed, quality=0.05 + 0.2 * seed, tag=tag, protocol={"validation": 10})
        patch_record(run_dir(root, "toy", "dsdh", 16, seed, tag=tag), config={
            "method": "dsdh", "seed": seed, "lr": lr, "epochs": 30, "validation": 10, "tag": tag,
            "data_root": f"/data{seed}", "eval_every": seed + 1, "hparams": {"alpha": 1.0}})
    for dataset, topk in (("toy", 100), ("other", 50)):
        for seed in SEEDS:
            fake_run(root, "dpsh", 16, seed, quality=0.1, tag=tag, dataset=dataset, protocol={"validation": 10})
            patch_record(run_dir(root, dataset, "dpsh", 16, seed, tag=tag), config={
                "lr": 0.1, "topk": topk, "device": f"cuda:{seed}", "validation": 10})
    fake_run(root, "csq", 16, 0, quality=0.1, tag=tag)
    build_report(root, tmp_path / "report", figures=False)
    rows = table_rows((tmp_path / "report" / f"map-{tag}.md").read_text())
    assert set(rows) == {"Method", "dpsh", "dsdh (lr=0.1)", "dsdh (lr=0.2)", "csq"}
    for lr, values in maps.items():
        assert re.findall(r"(\d\.\d{4}) \((\d)\)", rows[f"dsdh (lr={lr})"]) == [(f"{values['expected']:.4f}", "1")]
    assert len(re.findall(r"± \d\.\d{4} \(2\)", rows["dpsh"])) == 2  # both seeds, on each dataset
    frame = pd.read_csv(tmp_path / "report" / f"map-{tag}.csv")
    assert set(frame.method) == {"dpsh", "dsdh (lr=0.1)", "dsdh (lr=0.2)", "csq", "random-codes"}


def test_row_labels_compare_only_what_records_state():
    """A hyperparameter differs like a config key; a key one record does not state (written before
    the key existed) is compared among those that state it, a neutral key at its neutral value."""
    from hashbench.analysis.report import row_labels

    def record(method: str, seed: int, dataset: str = "toy", **config) -> dict:
        return {"method": method, "dataset": dataset, "bits": 16, "seed": seed, "status": "done",
                "config": {"method": method, "dataset": dataset, "bits": 16, "seed": seed, **config}}

    found = [(Path("a"), record("m", 0, lr=0.1, hparams={"alpha": 1})),
             (Path("b"), record("m", 1, lr=0.1, hparams={"alpha": 2}, augment="none")),
             (Path("c"), record("m", 2, lr=0.1, hparams={"alpha": 1}, validation=0, device="cpu")),
             (Path("d"), {**record("m", 3), "config": None}),
             (Path("e"), record("n", 0, lr=0.1, hparams={"beta": None})),
             (Path("f"), record("n", 1, lr=0.1, hparams={"beta": None}, allow_outside_root=False))]
    frame = records_frame(found)
    labels = row_labels(frame, {str(path): rec for path, rec in found})
    assert labels.tolist() == ["m (alpha=1)", "m (alpha=2)", "m (alpha=1)", "m", "n", "n"]


def synthetic_table(means: dict[str, list[float | None]], columns: list[tuple[str, int]]):
    from hashbench.analysis.tables import Cell, MapTable

    cells = {(row, *column): Cell(mean=value, std=None, n=int(value is not None))
             for row, values in means.items() for column, value in zip(columns, values, strict=True)}
    return MapTable(list(means), columns, cells, [])


def test_summary_sentences_state_what_the_table_holds():
    from hashbench.analysis import summary

    columns = [("toy", 16), ("toy", 32), ("toy", 64)]
    table = synthetic_table({"a": [0.50, 0.60, 0.40], "b": [0.55, 0.58, 0.47], "base": [0.20, 0.30, 0.50],
                             "c": [None, 0.10, 0.05]}, columns)
    assert summary.best_per_column(table) == [
        "toy: best at 16 bits b (0.5500; a next, 5.00 points lower), at 32 bits a (0.6000; b next, 2.00 points "
        "lower), at 64 bits base (0.5000; b next, 3.00 points lower)."]
    assert summary.gain_range(table, "base", ["a", "b", "c"], "They") == (
        "They gain from -45.0 points (c, toy 64 bits) to +35.0 (b, toy 16 bits) over base; below base in some "
        "column: c, a, b (3 of 3).")
    assert summary.gain_range(table, "c", ["a", "b"], "They") == (
        "They gain from +35.0 points (a, toy 64 bits) to +50.0 (a, toy 32 bits) over c; every one of them is "
        "above c in every column.")
    assert summary.gain_range(table, "c", ["c"], "They") is None
    assert summary.ablation_gaps(table, {"base": ["a", "c"]}) == [
        "a minus base: -10.0 to +30.0 points, above it in 2 of 3 columns.",
        "c minus base: -45.0 to -20.0 points, above it in 0 of 2 columns."]
    assert summary.length_trend(table) == ["toy: lower at 64 bits than at 16 bits for a (-10.0 points), b (-8.0 "
                                           "points); 2 of 3 rows."]
    rising = synthetic_table({"a": [0.1, 0.2], "b": [0.3, 0.3]}, [("toy", 16), ("toy", 32)])
    assert summary.length_trend(rising) == ["toy: no row is lower at 32 bits than at 16 bits (2 rows)."]
    single = synthetic_table({"a": [0.25]}, [("toy", 16)])
    assert summary.best_per_column(single) == ["toy: best at 16 bits a (0.2500; the only row with a number)."]
    assert summary.length_trend(single) == []

    runs = pd.DataFrame({"method": ["m1", "m1", "m2", "m2", "m2", "m2"], "dataset": "toy",
                         "bits": [16, 16, 16, 32, 32, 32], "status": ["done"] * 5 + ["failed"],
                         "map_expected": [0.50, 0.52, 0.40, 0.30, 0.30, np.nan],
                         "map_index": [0.49, 0.50, 0.40, 0.33, np.nan, np.nan]})
    assert summary.tie_rule_gap(runs) == (
        "map_expected@K (ties: expectation over orders) and map@K (ties broken by database index) differ by 0.00 "
        "to 3.00 points in a cell (means over seeds), most for m2 (toy 32 bits), where map@K is higher.")


def test_the_page_summary_names_each_columns_bold_cell(tmp_path, monkeypatch):
    """The generated sentences on the page agree with the tables they follow."""
    out = build_layout_report(tmp_path, monkeypatch)
    page = (out / "README.md").read_text()
    summary = page[page.index("## Summary"):page.index("## Unfinished runs")]
    for name, label in (("map.md", "Supervised methods"), ("map_unsupervised.md", "Unsupervised methods"),
                        (f"map-{TAG}.md", f"Tag `{TAG}`")):
        rows = table_rows((out / name).read_text())
        columns = [cell.strip() for cell in rows.pop("Method").split("|")[2:-1]]
        sentence = next(line for line in summary.splitlines() if line.startswith(f"- {label}, best per column"))
        for index, column in enumerate(columns):
            best = [(method, cell) for method, line in rows.items()
                    if (cell := line.split("|")[2 + index].strip()).startswith("**")]
            (method, cell), = best
            assert f"at {column.split()[-2]} bits {method} ({cell.strip('*').split()[0]};" in sentence
    gain = table_rows((out / "gain-over-itq.md").read_text())
    values = {float(cell) for method, line in gain.items() if method != "Method" for cell in line.split("|")[2:-1]}
    assert f"gain from {min(values):+.1f} points" in summary and f"to {max(values):+.1f} (" in summary
    assert "- Tie rules: map_expected@K" in summary and "- Ablation: mlh-center minus mlh: " in summary


def test_appendix_options_from_an_experiment_file(cli, tmp_path, monkeypatch):
    """[report] appendix_tags and appendix_notes: checked as the command line's, the notes file
    inside the working directory, a missing one named in one line."""
    monkeypatch.chdir(tmp_path)
    layout_results(tmp_path / "results")
    (tmp_path / "appendix-notes.md").write_text(APPENDIX_NOTES)
    config = tmp_path / "x.toml"
    config.write_text('methods = ["csq"]\n\n[report]\nappendix_tags = ["equal-head"]\n'
                      'appendix_notes = "appendix-notes.md"\nfigures = false\n')
    result = cli("report", "--config", config)
    assert result.exit_code == 0, result.output
    appendix = (tmp_path / "reports" / "appendix.md").read_text()
    assert "### Convergence check" in appendix and "tag `equal-head`" in appendix
    assert "tag `equal-head`\n" not in (tmp_path / "reports" / "README.md").read_text()

    config.write_text('methods = ["csq"]\n\n[report]\nappendix_notes = "../secret.md"\n')
    outside = cli("report", "--config", config)
    assert outside.exit_code != 0 and len(outside.output.strip().splitlines()) == 1
    assert "[report] appendix_notes '../secret.md' leads outside" in outside.output
    assert "give it on the command line as --appendix-notes instead" in outside.output
    missing = cli("report", "--appendix-notes", "nope.md")
    assert missing.exit_code != 0 and "--appendix-notes: appendix notes file not found: nope.md" in missing.output


@pytest.mark.slow
def test_benchmark_tables_say_which_runs_they_show(tmp_path):
    """The appendix's tables from benchmarks/validation_curves.py and convergence.py: a line above
    each says which runs it shows, and each row names its tag and lr (curves) or its seeds."""
    import os
    import subprocess
    import sys

    def script(name: str, *args: object) -> None:
        subprocess.run([sys.executable, REPO / "benchmarks" / name, "--results", tmp_path / "results", "--datasets",
                        "digits", "--methods", "csq", "--bits", "16", *map(str, args)],
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, check=False)

    script("validation_curves.py", "--epochs", 2, "--every", 1, "--validation", 100, "--set", "lr=2e-3", "--tag",
           "curve-lr", "--out", tmp_path / "curves.md")
    lines = (tmp_path / "curves.md").read_text().splitlines()
    assert lines[:2] == ["Validation curves of csq (digits; 16 bits, seed 0, 100 held-out training items; 2 epochs, a "
                         "point every 1 epochs; tag curve-lr; --set lr=2e-3):", ""]
    assert lines[2].startswith("| method | dataset | tag | lr | recipe epochs |")
    assert lines[4].startswith("| csq | digits | curve-lr | 0.002 | ")
    script("convergence.py", "--seeds", 0, "--out", tmp_path / "convergence.md")  # exits 1 where not converged
    lines = (tmp_path / "convergence.md").read_text().splitlines()
    assert lines[:2] == ["The recipes of csq against their schedule stretched x2 (tag epochs-x2), seeds 0:", ""]
    assert lines[2].startswith("| method | dataset | bits | seeds | epochs |")
    assert lines[4].startswith("| csq | digits | 16 | 1 | ")


def test_summary_names_the_row_the_table_sets_in_bold_when_means_tie():
    from hashbench.analysis import summary
    from hashbench.analysis.tables import map_table

    runs = pd.DataFrame({"method": ["a", "b", "c"], "dataset": "toy", "bits": 16, "status": "done", "topk": 100,
                         "map_expected": [0.5, 0.5, 0.1], "family": "other", "backbone": "x", "weights": None})
    table = map_table(runs)
    (bold,) = [row for row in table.rows if table.cells[(row, "toy", 16)].rank == 1]
    assert summary.best_per_column(table) == [f"toy: best at 16 bits {bold} (0.5000; "
                                              f"{({'a', 'b'} - {bold}).pop()} next, 0.00 points lower)."]
