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
    """Method -> its table line (the "random codes" floor row only with ``floor``)."""
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
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
