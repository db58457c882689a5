"""mAP tables in the layout of hashing papers, from the records alone.

One row per method; column groups dataset x bits; each cell is mean +/- std over seeds with
the number of seeds; the best cell of a column in bold, the second best underlined. Runs
that failed or never finished are shown as such, never dropped. A table shows mAP@K under
one rule for ties at equal Hamming distance (see :data:`TIE_RULES`), and says which, and
states per dataset what "relevant" means.

Beside the methods, a table may show the floor: the mAP of random codes on the same queries
and database (:class:`RandomFloor`). On a multi-label set where most pairs share a label it is
high (0.8 is possible), and a method's number means little without it. The floor is one
italic row "random codes" in ``.md``/``.tex``, never bold or underlined and not ranked; in the
long-form CSV it is one row per column with method :data:`RANDOM_CODES`, an empty seed and
metric ``map_expected@K``, so that a pivot of the CSV gives back the whole table.

Text from records (dataset names, paths, failure reasons) reaches ``.md`` files only through
:func:`markdown_text` or :func:`markdown_code`, and ``.tex`` files through :func:`latex_text`:
a ``|`` in a dataset's name must not add a column, nor ``<script>`` run in a viewer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hashbench.method import family_key

LONG_COLUMNS = ["method", "dataset", "bits", "seed", "metric", "value"]
#: The CSV's method name for the random-code floor rows.
RANDOM_CODES = "random-codes"
#: Queries (a seeded sample) the floor is computed on: enough for a stable mean, cheap on any database.
FLOOR_QUERIES = 500


def markdown_text(text: object) -> str:
    """``text`` shown literally in Markdown, on one line: HTML's ``& < >`` as entities, every
    character Markdown acts on inline (emphasis, code, links, table cells, math) escaped; a
    ``_`` inside a word (``small_cnn``) acts on nothing and stays as it is."""
    flat = " ".join(str(text).splitlines())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    flat = re.sub(r"([\\`*\[\]|~$])", r"\\\1", flat)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", flat)


def markdown_code(text: object) -> str:
    """``text`` as a Markdown code span on one line (a command, a folder), fenced with more
    backticks than any run inside it."""
    flat = " ".join(str(text).splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


#: LaTeX's special characters and what typesets each as itself.
_LATEX = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_text(text: object) -> str:
    """``text`` typeset literally by LaTeX, on one line."""
    return "".join(_LATEX.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def family_order(records: pd.DataFrame) -> list[str]:
    """The methods of ``records`` grouped by family (in :data:`hashbench.method.FAMILIES` order), then by name."""
    families = dict(zip(records["method"], records["family"], strict=True))
    return sorted(families, key=lambda m: (family_key(families[m]), m))


@dataclass(frozen=True)
class TieRule:
    column: str  # the normalised column of hashbench.results.records_frame
    metric: str  # the record's metric name, with K for "{k}"
    description: str


#: ``expected`` is independent of database order, so it is the default; ``index`` is the literature's figure.
TIE_RULES = {
    "expected": TieRule("map_expected", "map_expected@{k}",
                        "ties at equal Hamming distance: expectation over random orders"),
    "index": TieRule("map_index", "map@{k}", "ties at equal Hamming distance: broken by database index"),
}


@dataclass(frozen=True)
class RandomFloor:
    """What seeded random codes score on one (dataset, bits) column: the level a method must
    clear before its mAP says anything."""

    value: float  # mAP@topk, ties expected over orders
    topk: int


Floors = dict[tuple[str, int], RandomFloor]  # (dataset, bits) -> floor


def long_form(records: pd.DataFrame, floors: Floors | None = None) -> pd.DataFrame:
    """One row per finished run and metric: ``method,dataset,bits,seed,metric,value``; plus one
    :data:`RANDOM_CODES` row (empty seed) per floor of a column that ``records`` has."""
    done = records[records["status"] == "done"]
    metric_columns = [c for c in done.columns if c.startswith("metric.")]
    parts = []
    if not done.empty and metric_columns:
        melted = done.melt(id_vars=["method", "dataset", "bits", "seed"], value_vars=metric_columns,
                           var_name="metric", value_name="value").dropna(subset=["value"])
        melted["metric"] = melted["metric"].str.removeprefix("metric.")
        parts.append(melted)
    columns = set(zip(records["dataset"], records["bits"].astype(int), strict=True))
    floor_rows = [{"method": RANDOM_CODES, "dataset": dataset, "bits": bits, "seed": None,
                   "metric": f"map_expected@{floor.topk}", "value": floor.value}
                  for (dataset, bits), floor in sorted((floors or {}).items()) if (dataset, bits) in columns]
    if floor_rows:
        parts.append(pd.DataFrame(floor_rows))
    if not parts:
        return pd.DataFrame(columns=LONG_COLUMNS)
    frame = pd.concat(parts, ignore_index=True).astype({"seed": "Int64"})  # an integer column with empty cells
    return frame.sort_values(["dataset", "bits", "method", "seed", "metric"])[LONG_COLUMNS].reset_index(drop=True)


@dataclass
class Cell:
    mean: float | None
    std: float | None
    n: int
    note: str = ""  # e.g. "1 failed"
    rank: int | None = None  # 1 = best in its column, 2 = second


@dataclass
class MapTable:
    methods: list[str]
    columns: list[tuple[str, int]]  # (dataset, bits)
    cells: dict[tuple[str, str, int], Cell]
    captions: list[str]  # Markdown (record text in them through markdown_text); .tex has them as comments
    floors: Floors = field(default_factory=dict)  # the columns' random-code floors, where known


def relevance_rule(multi_label: bool) -> str:
    """What the mAP counts as a hit: with several labels per item, any shared one is enough."""
    return "relevant = shares at least one label with the query" if multi_label else "relevant = same class"


def map_table(records: pd.DataFrame, methods: list[str] | None = None, ties: str = "expected", *,
              floors: Floors | None = None, multi_label: dict[str, bool] | None = None) -> MapTable:
    """Summarise mAP@K under the tie rule ``ties`` (a key of :data:`TIE_RULES`) of ``records``,
    a :func:`hashbench.results.load_records` frame. ``floors`` adds the "random codes" row;
    ``multi_label`` (dataset -> flag) puts each dataset's relevance rule in the captions."""
    rule = TIE_RULES[ties]
    if methods is not None:
        records = records[records["method"].isin(methods)]
    methods = methods or sorted(records["method"].unique())
    methods = [m for m in methods if m in set(records["method"])]
    columns = sorted({(d, int(b)) for d, b in zip(records["dataset"], records["bits"], strict=True)})
    cells: dict[tuple[str, str, int], Cell] = {}
    for method in methods:
        for dataset, bits in columns:
            rows = records[(records["method"] == method) & (records["dataset"] == dataset) & (records["bits"] == bits)]
            done = rows[rows["status"] == "done"]
            values = done[rule.column].to_numpy(dtype=float)
            missing = int(np.isnan(values).sum())  # e.g. a schema-1 record, which stores one tie rule
            values = values[~np.isnan(values)]
            failed = int((rows["status"] == "failed").sum())
            other = len(rows) - len(done) - failed
            note = ", ".join(f"{n} {what}" for n, what in (
                (failed, "failed"), (other, "unfinished"), (missing, f"without {rule.metric.format(k='K')}")) if n)
            cells[(method, dataset, bits)] = Cell(
                mean=float(values.mean()) if len(values) else None,
                std=float(values.std(ddof=1)) if len(values) > 1 else None,
                n=len(values), note=note,
            )
    for dataset, bits in columns:
        ranked = sorted((c.mean, m) for m in methods if (c := cells[(m, dataset, bits)]).mean is not None)
        for rank, (_, method) in enumerate(reversed(ranked[-2:]), start=1):
            if rank == 2 and len(ranked) < 3:
                continue  # with two methods, "second best" is just "worst"
            cells[(method, dataset, bits)].rank = rank
    captions = [f"mAP@K, {rule.description} (`{rule.metric.format(k='K')}`)"]
    for dataset in sorted({d for d, _ in columns}):
        sub = records[(records["dataset"] == dataset) & (records["status"] == "done")]
        ks = sorted({int(k) for k in sub["topk"].dropna()})
        backbones = sorted({f"{b} ({w or 'random init'})" for b, w in zip(sub["backbone"], sub["weights"],
                                                                           strict=True)})
        flag = (multi_label or {}).get(dataset)
        rule = f"; {relevance_rule(flag)}" if flag is not None else ""
        captions.append(f"{markdown_text(dataset)}: mAP@{'/'.join(map(str, ks)) or '?'}{rule}; backbone "
                        f"{markdown_text(', '.join(backbones)) or '?'}")
    floors = {column: floor for column, floor in (floors or {}).items() if column in columns}
    if floors:
        captions.append(f"random codes (not ranked): mAP@K of seeded random +/-1 codes, ties expected over orders, on "
                        f"a seeded sample of at most {FLOOR_QUERIES} queries and the whole database of one run "
                        f"of the column; the floor a method must clear")
    return MapTable(methods, columns, cells, captions, floors)


def _cell_text(cell: Cell, style: str) -> str:
    if cell.mean is None:
        return cell.note or ("—" if style == "md" else "--")
    pm = "±" if style == "md" else r"$\pm$"
    spread = f" {pm} {cell.std:.4f}" if cell.std is not None else ""
    text = f"{cell.mean:.4f}{spread} ({cell.n})"
    if cell.note:
        text += f" [{cell.note}]"
    if cell.rank == 1:
        return f"**{text}**" if style == "md" else rf"\textbf{{{text}}}"
    if cell.rank == 2:
        return f"<u>{text}</u>" if style == "md" else rf"\underline{{{text}}}"
    return text


def to_markdown(table: MapTable, title: str) -> str:
    """The table as Markdown under ``title`` (Markdown: record text in it escaped by the caller)."""
    header = ["Method", *[f"{markdown_text(d)} {b} bits" for d, b in table.columns]]
    lines = [f"# {title}", "", *[f"- {c}" for c in table.captions],
             "- cells: mean ± std over seeds (number of seeds); best per column in bold, second underlined", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    for method in table.methods:
        cells = [_cell_text(table.cells[(method, d, b)], "md") for d, b in table.columns]
        lines.append("| " + " | ".join([markdown_text(method), *cells]) + " |")
    if table.floors:
        floors = [f"*{table.floors[c].value:.4f}*" if c in table.floors else "—" for c in table.columns]
        lines.append("| " + " | ".join(["*random codes*", *floors]) + " |")
    return "\n".join(lines) + "\n"


def gain_markdown(table: MapTable, baseline: str, title: str, *, config: str | None = None) -> str:
    """Each method's mean mAP minus ``baseline``'s in the same column, in points (x100), so a
    reader sees at once how much a method adds over, say, ITQ on the same features; ``config``:
    the experiment file the runs came from."""
    header = ["Method", *[f"{markdown_text(d)} {b} bits" for d, b in table.columns]]
    lines = [f"# {title}", "", f"- mean mAP of the method minus mean mAP of {markdown_code(baseline)} in the same "
             "column, in points (x100); the tie rule and relevance are those of the main table",
             *([f"- config: {markdown_text(config)}"] if config else []), "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    for method in table.methods:
        if method == baseline:
            continue
        cells = []
        for dataset, bits in table.columns:
            own, base = table.cells.get((method, dataset, bits)), table.cells.get((baseline, dataset, bits))
            known = own is not None and base is not None and own.mean is not None and base.mean is not None
            cells.append(f"{100 * (own.mean - base.mean):+.1f}" if known else "—")
        lines.append("| " + " | ".join([markdown_text(method), *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: MapTable, title: str) -> str:
    datasets = list(dict.fromkeys(d for d, _ in table.columns))
    spans = [sum(1 for d, _ in table.columns if d == ds) for ds in datasets]
    lines = [
        r"% " + title + " (generated by hashbench report; needs \\usepackage{booktabs})",
        *[r"% " + c for c in table.captions],
        r"\begin{tabular}{l" + "c" * len(table.columns) + "}",
        r"\toprule",
        "Method & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{latex_text(ds)}}}"
                                   for ds, n in zip(datasets, spans, strict=True)) + r" \\",
    ]
    start = 2
    rules = []
    for n in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append("".join(rules))
    lines.append(" & " + " & ".join(f"{b} bits" for _, b in table.columns) + r" \\")
    lines.append(r"\midrule")
    for method in table.methods:
        cells = [_cell_text(table.cells[(method, d, b)], "tex") for d, b in table.columns]
        lines.append(" & ".join([latex_text(method), *cells]) + r" \\")
    if table.floors:
        floors = [rf"\textit{{{table.floors[c].value:.4f}}}" if c in table.floors else "--" for c in table.columns]
        lines += [r"\midrule", " & ".join([r"\textit{random codes}", *floors]) + r" \\"]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
