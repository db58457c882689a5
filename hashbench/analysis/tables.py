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

Rows are grouped by method family (:data:`hashbench.method.FAMILIES` order); where a table
holds more than one group, each group opens with a label row (``**pairwise**`` in ``.md``, an
italic full-width row in ``.tex``) and a caption says what each family is. A row is one method,
or one method and the config values that set its runs apart from its other runs in the table
(a ``row`` column of the records, :func:`hashbench.analysis.report.row_labels`).

Text from records (dataset names, paths, failure reasons) reaches ``.md`` files only through
:func:`markdown_text` or :func:`markdown_code`, and ``.tex`` files through :func:`latex_text`:
a ``|`` in a dataset's name must not add a column, nor ``<script>`` run in a viewer. An
absolute path of the machine in such text (a weights file, say) is shown by
:func:`without_machine_paths`: relative to the working directory inside it, else its last part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.method import family_key

LONG_COLUMNS = ["method", "dataset", "bits", "seed", "metric", "value"]
#: The CSV's method name for the random-code floor rows.
RANDOM_CODES = "random-codes"
#: Queries (a seeded sample) the floor is computed on: enough for a stable mean, cheap on any database.
FLOOR_QUERIES = 500
#: What each family of :data:`hashbench.method.FAMILIES` groups, for the tables' captions.
FAMILY_MEANINGS = {"pairwise": "pairwise or triplet similarity", "center": "hash centers, proxies, codebooks",
                   "classification": "a classifier on the codes", "mutual": "MLH", "shallow": "closed-form fits on "
                   "features", "unsupervised": "label-free deep methods", "other": "anything else"}
#: An absolute path in free text: a ``/`` that no word, ``:`` (``https://``, ``listfile:/data``), ``.``
#: or ``/`` precedes, and the characters up to a space or punctuation that ends a path in prose.
ABSOLUTE_PATH = re.compile(r"(?<![\w:./~-])/[^\s:;,'\"()\[\]<>|`*]+")


def display_path(path: str | Path, cwd: Path | None = None) -> str:
    """``path`` as a page may show it: relative to the working directory ``cwd`` when inside it
    (symbolic links followed), else ``…/<its last part>``, so that no page or table names the
    machine's folders (the ``…`` says the rest was left out; a bare name would read as relative)."""
    here = (cwd or Path.cwd()).resolve()
    resolved = (here / Path(path)).resolve()
    if resolved.is_relative_to(here):
        return str(resolved.relative_to(here)) if resolved != here else "."
    return f"…/{resolved.name}" if resolved.name else "…"


def without_machine_paths(text: str, cwd: Path | None = None) -> str:
    """``text`` with each absolute path in it shown by :func:`display_path` (a command line, a
    failure reason, a weights file); a dataset spec's path (``listfile:/data``) names the
    dataset and stays."""
    def shown(match: re.Match) -> str:
        path = match.group(0).rstrip(".")  # a full stop ends the sentence, not the path
        return display_path(path, cwd) + match.group(0)[len(path):]

    return ABSOLUTE_PATH.sub(shown, text)


def markdown_text(text: object) -> str:
    """``text`` shown literally in Markdown, on one line: HTML's ``& < >`` as entities, every
    character Markdown acts on inline (emphasis, code, links, table cells, math) escaped; a
    ``_`` inside a word (``small_cnn``) acts on nothing and stays as it is."""
    flat = " ".join(str(text).splitlines())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    flat = re.sub(r"([\\`*\[\]|~$])", r"\\\1", flat)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", flat)


#: A Markdown table's delimiter row: ``|---|:---:|`` (a pipe in it, so that ``---`` alone stays a rule).
DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$")


def separate_tables(markdown: str) -> str:
    """``markdown`` with a blank line before every table (its header row, the line above a
    delimiter row) and after every table's last row, outside fenced code. A header row right
    under another table's last row would otherwise continue that table (GitHub renders the two
    as one, the second header as a data row), and a line of text right under a table joins it
    as a row (a table ends at a line without a pipe); the page puts together tables from
    several files (the benchmark scripts' too)."""
    lines = markdown.split("\n")
    out: list[str] = []
    fenced, in_table = False, False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        starts = (not fenced and index + 1 < len(lines) and "|" in line and DELIMITER_ROW.match(lines[index + 1])
                  and not DELIMITER_ROW.match(line))
        if starts or (in_table and line.strip() and "|" not in line):
            if out and out[-1].strip():
                out.append("")
            in_table = False
        out.append(line)
        in_table = in_table or bool(starts)
        if not line.strip():
            in_table = False
    return "\n".join(out)


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


def row_of(records: pd.DataFrame) -> pd.Series:
    """Each run's table row: its ``row`` label where the frame has one, else its method."""
    return records["row"].fillna(records["method"]) if "row" in records else records["method"]


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
    :data:`RANDOM_CODES` row (empty seed) per floor of a column that ``records`` has. ``method``
    is the run's table row (:func:`row_of`), so that a pivot gives back the table."""
    done = records[records["status"] == "done"].assign(method=row_of)
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
    rows: list[str]  # a method, or "method (key=value, ...)" (see the module docstring)
    columns: list[tuple[str, int]]  # (dataset, bits)
    cells: dict[tuple[str, str, int], Cell]  # (row, dataset, bits) -> cell
    captions: list[str]  # Markdown (record text in them through markdown_text); .tex has them as comments
    floors: Floors = field(default_factory=dict)  # the columns' random-code floors, where known
    groups: dict[str, str] = field(default_factory=dict)  # row -> its group's label, where a table has 2+ groups

    def group_starts(self, rows: list[str] | None = None) -> dict[str, str]:
        """Row -> the label of the group it opens among ``rows`` (default: all; a group's rows are consecutive)."""
        starts, previous = {}, None
        for row in self.rows if rows is None else rows:
            if row in self.groups and self.groups[row] != previous:
                starts[row] = previous = self.groups[row]
        return starts


def relevance_rule(multi_label: bool) -> str:
    """What the mAP counts as a hit: with several labels per item, any shared one is enough."""
    return "relevant = shares at least one label with the query" if multi_label else "relevant = same class"


def map_table(records: pd.DataFrame, methods: list[str] | None = None, ties: str = "expected", *,
              floors: Floors | None = None, multi_label: dict[str, bool] | None = None,
              groups: dict[str, str] | None = None) -> MapTable:
    """Summarise mAP@K under the tie rule ``ties`` (a key of :data:`TIE_RULES`) of ``records``,
    a :func:`hashbench.results.load_records` frame (one row per :func:`row_of` label, in the
    order of ``methods``). ``floors`` adds the "random codes" row; ``multi_label`` (dataset ->
    flag) puts each dataset's relevance rule in the captions; ``groups`` (method -> label)
    groups the rows, by default by method family (shown where there are two groups or more)."""
    rule = TIE_RULES[ties]
    if methods is not None:
        records = records[records["method"].isin(methods)]
    methods = methods or sorted(records["method"].unique())
    methods = [m for m in methods if m in set(records["method"])]
    records = records.assign(row=row_of(records))
    rows = [row for method in methods for row in sorted(set(records.loc[records["method"] == method, "row"]))]
    method_of = dict(zip(records["row"], records["method"], strict=True))
    columns = sorted({(d, int(b)) for d, b in zip(records["dataset"], records["bits"], strict=True)})
    cells: dict[tuple[str, str, int], Cell] = {}
    for row in rows:
        for dataset, bits in columns:
            runs = records[(records["row"] == row) & (records["dataset"] == dataset) & (records["bits"] == bits)]
            done = runs[runs["status"] == "done"]
            values = done[rule.column].to_numpy(dtype=float)
            missing = int(np.isnan(values).sum())  # e.g. a schema-1 record, which stores one tie rule
            values = values[~np.isnan(values)]
            failed = int((runs["status"] == "failed").sum())
            other = len(runs) - len(done) - failed
            note = ", ".join(f"{n} {what}" for n, what in (
                (failed, "failed"), (other, "unfinished"), (missing, f"without {rule.metric.format(k='K')}")) if n)
            cells[(row, dataset, bits)] = Cell(
                mean=float(values.mean()) if len(values) else None,
                std=float(values.std(ddof=1)) if len(values) > 1 else None,
                n=len(values), note=note,
            )
    for dataset, bits in columns:
        ranked = sorted((c.mean, row) for row in rows if (c := cells[(row, dataset, bits)]).mean is not None)
        for rank, (_, row) in enumerate(reversed(ranked[-2:]), start=1):
            if rank == 2 and len(ranked) < 3:
                continue  # with two rows, "second best" is just "worst"
            cells[(row, dataset, bits)].rank = rank
    captions = [f"mAP@K, {rule.description} (`{rule.metric.format(k='K')}`)"]
    for dataset in sorted({d for d, _ in columns}):
        sub = records[(records["dataset"] == dataset) & (records["status"] == "done")]
        ks = sorted({int(k) for k in sub["topk"].dropna()})
        backbones = sorted({f"{b} ({w if isinstance(w, str) and w else 'random init'})"  # None, or NaN beside text
                            for b, w in zip(sub["backbone"], sub["weights"], strict=True)})
        flag = (multi_label or {}).get(dataset)
        relevance = f"; {relevance_rule(flag)}" if flag is not None else ""
        captions.append(f"{markdown_text(dataset)}: mAP@{'/'.join(map(str, ks)) or '?'}{relevance}; backbone "
                        f"{markdown_text(without_machine_paths(', '.join(backbones))) or '?'}")
    floors = {column: floor for column, floor in (floors or {}).items() if column in columns}
    if floors:
        captions.append(f"random codes (not ranked): mAP@K of seeded random +/-1 codes, ties expected over orders, on "
                        f"a seeded sample of at most {FLOOR_QUERIES} queries and the whole database of one run "
                        f"of the column; the floor a method must clear")
    by_family = groups is None
    if by_family:
        groups = dict(zip(records["method"], records["family"].fillna("other"), strict=True))
    row_groups = {row: groups[method_of[row]] for row in rows if method_of[row] in groups}
    if len(set(row_groups.values())) < 2:
        row_groups = {}
    elif by_family:
        captions.append(family_caption([row_groups[row] for row in rows]))
    return MapTable(rows, columns, cells, captions, floors, row_groups)


def family_caption(families: list[str]) -> str:
    """The caption that says what each of ``families`` (in order, repeats allowed) groups."""
    return "rows grouped by method family: " + "; ".join(
        f"{markdown_text(family)}: {FAMILY_MEANINGS.get(family, 'as its methods declare')}"
        for family in dict.fromkeys(families))


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


def _markdown_head(table: MapTable, title: str, captions: list[str]) -> list[str]:
    header = ["Method", *[f"{markdown_text(d)} {b} bits" for d, b in table.columns]]
    return [f"# {title}", "", *[f"- {c}" for c in captions], "",
            "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]


def _markdown_group_row(table: MapTable, starts: dict[str, str], row: str) -> list[str]:
    """The label row that opens ``row``'s group, if it opens one (``starts``: :meth:`MapTable.group_starts`):
    the label in bold, the other cells empty."""
    label = starts.get(row)
    return [] if label is None else ["| " + " | ".join([f"**{markdown_text(label)}**", *[""] * len(table.columns)])
                                     + " |"]


def to_markdown(table: MapTable, title: str) -> str:
    """The table as Markdown under ``title`` (Markdown: record text in it escaped by the caller)."""
    lines = _markdown_head(table, title, [
        *table.captions, "cells: mean ± std over seeds (number of seeds); best per column in bold, second underlined"])
    starts = table.group_starts()
    for row in table.rows:
        cells = [_cell_text(table.cells[(row, d, b)], "md") for d, b in table.columns]
        lines += [*_markdown_group_row(table, starts, row), "| " + " | ".join([markdown_text(row), *cells]) + " |"]
    if table.floors:
        floors = [f"*{table.floors[c].value:.4f}*" if c in table.floors else "—" for c in table.columns]
        lines.append("| " + " | ".join(["*random codes*", *floors]) + " |")
    return "\n".join(lines) + "\n"


def gain_points(table: MapTable, row: str, baseline: str, column: tuple[str, int]) -> float | None:
    """``row``'s mean mAP minus ``baseline``'s in ``column``, in points (x100); None where either is unknown."""
    own, base = table.cells.get((row, *column)), table.cells.get((baseline, *column))
    if own is None or base is None or own.mean is None or base.mean is None:
        return None
    return 100 * (own.mean - base.mean)


def gain_markdown(table: MapTable, baseline: str, title: str, *, config: str | None = None) -> str:
    """Each method's mean mAP minus ``baseline``'s in the same column, in points (x100), so a
    reader sees at once how much a method adds over, say, ITQ on the same features; ``config``:
    the experiment file the runs came from."""
    rows = [row for row in table.rows if row != baseline]
    groups = [table.groups[row] for row in rows if row in table.groups]
    by_family = any(caption.startswith("rows grouped by method family") for caption in table.captions)
    starts = table.group_starts(rows) if len(set(groups)) > 1 else {}
    lines = _markdown_head(table, title, [
        f"mean mAP of the method minus mean mAP of {markdown_code(baseline)} in the same column, in points (x100); "
        "the tie rule and relevance are those of the main table",
        *([family_caption(groups)] if starts and by_family else []),
        *([f"config: {markdown_text(config)}"] if config else [])])
    for row in rows:
        gains = [gain_points(table, row, baseline, column) for column in table.columns]
        cells = [f"{gain:+.1f}" if gain is not None else "—" for gain in gains]
        lines += [*_markdown_group_row(table, starts, row), "| " + " | ".join([markdown_text(row), *cells]) + " |"]
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
    starts = table.group_starts()
    for row in table.rows:
        if row in starts:  # a rule between groups, and the group's label across the whole row
            lines += [r"\midrule"] * (row != table.rows[0])
            lines.append(rf"\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\textit{{{latex_text(starts[row])}}}}} \\")
        cells = [_cell_text(table.cells[(row, d, b)], "tex") for d, b in table.columns]
        lines.append(" & ".join([latex_text(row), *cells]) + r" \\")
    if table.floors:
        floors = [rf"\textit{{{table.floors[c].value:.4f}}}" if c in table.floors else "--" for c in table.columns]
        lines += [r"\midrule", " & ".join([r"\textit{random codes}", *floors]) + r" \\"]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
