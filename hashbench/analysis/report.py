"""``hashbench report``: every table and figure from the records and saved codes, no retraining.

The page (``README.md``) opens with what was run, then shows the results tables, sentences
generated from them (:mod:`hashbench.analysis.summary`), the notes, unfinished runs, figures
and retrieval examples. Tables of validation runs (held-out training items as queries) and of
the ``appendix_tags`` (checks, such as a stretched schedule), with the ``appendix_notes``, go
on a second page, ``appendix.md``, linked from the first: they choose and check recipes, they
are not results, and they would push the results far down the page. No page or table names a
folder of the machine (:func:`~hashbench.analysis.tables.without_machine_paths`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hashbench.analysis import summary
from hashbench.analysis.tables import (
    FLOOR_QUERIES,
    TIE_RULES,
    Floors,
    MapTable,
    RandomFloor,
    display_path,
    family_order,
    gain_markdown,
    long_form,
    map_table,
    markdown_code,
    markdown_text,
    relevance_rule,
    separate_tables,
    to_latex,
    to_markdown,
    without_machine_paths,
)
from hashbench.config import BITS, NEUTRAL_VALUES, RUNTIME_KEYS
from hashbench.eval import mean_average_precision
from hashbench.results import CodesLoader, CodesReader, iter_records, load_codes, records_frame, slug, warn
from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError, Items, Param, check_choice, choice, flag, integer, text

#: The options of ``hashbench report``, and the keys of an experiment file's ``[report]`` table.
REPORT_OPTIONS: dict[str, Param | Items] = {
    "results": text("results", help="the results folder"),
    "out": text("reports", help="the report folder"),
    "datasets": Items(text(None), help="only these datasets"),
    "bits": Items(BITS, help="only these code lengths"),
    "tsne_bits": integer(None, BITS.low, BITS.high, nullable=True,
                         help="code length of the t-SNE plots (none: the longest)"),
    "tsne_methods": Items(text(None), may_be_empty=True,
                          help="t-SNE plots for these methods only ('none': no plot; default: all); each takes "
                               "seconds of CPU"),
    "notes": text(None, nullable=True, help="a Markdown file whose text the report page shows after the results "
                                            "tables (how to read them: protocols, metric, setup)"),
    "appendix_notes": text(None, nullable=True, help="a Markdown file whose text opens the appendix page (e.g. the "
                                                     "convergence and validation-curve tables of benchmark scripts)"),
    "appendix_tags": Items(text(None), may_be_empty=True,
                           help="tags whose tables go on the appendix page (checks, not results; the tags of "
                                "validation runs always do)"),
    "ties": choice("expected", tuple(TIE_RULES),
                   help="mAP in the tables with ties at equal Hamming distance as the expectation over random "
                        "orders (independent of database order) or broken by database index"),
    "baseline": text(None, nullable=True, help="add a table of every method's mAP gain over this one (e.g. itq)"),
    "figures": flag(True, help="draw the figures (PR, P@N, code distances, training curves, t-SNE)"),
}
#: The second page of a report.
APPENDIX = "appendix.md"
#: Config keys that never set two runs of one method apart in a table: its column, its seed, and
#: the keys that change how a run is carried out but not its result.
PER_RUN_KEYS = frozenset({"method", "dataset", "bits", "seed", *RUNTIME_KEYS})


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def first_codes(runs: pd.DataFrame, codes_of: CodesLoader) -> tuple[pd.Series, dict[str, np.ndarray]] | None:
    """The first of ``runs`` whose codes load, and its codes (a loader may skip damaged ones: None)."""
    for _, run in runs.iterrows():
        if (codes := codes_of(Path(run["path"]))) is not None:
            return run, codes
    return None


def random_code_floors(records: pd.DataFrame, codes_of: CodesLoader = load_codes) -> Floors:
    """Per (dataset, bits) with a finished run: the mAP@K of seeded random +/-1 codes of that
    length, ties expected over orders, on a seeded sample of at most
    :data:`~hashbench.analysis.tables.FLOOR_QUERIES` of that run's queries and its whole database
    (labels from its codes.npz, K its topk). The run is the first by path (whose codes load), so
    the floor does not depend on the order records were found in."""
    floors: Floors = {}
    done = records[records["status"] == "done"].sort_values("path")
    for (dataset, bits), runs in done.groupby(["dataset", "bits"], sort=True):
        if (found := first_codes(runs, codes_of)) is None:
            continue
        run, codes = found
        query_labels, database_labels = codes["query_labels"], codes["database_labels"]
        rng = np.random.default_rng(0)
        queries = np.sort(rng.choice(len(query_labels), min(FLOOR_QUERIES, len(query_labels)), replace=False))
        topk = int(run["topk"])
        value = mean_average_precision(
            rng.choice(np.array([-1, 1], dtype=np.int8), (len(queries), int(bits))),
            rng.choice(np.array([-1, 1], dtype=np.int8), (len(database_labels), int(bits))),
            query_labels[queries], database_labels, topk=topk, ties="expected")
        floors[(dataset, int(bits))] = RandomFloor(value, topk)
    return floors


def multi_label_by_dataset(records: pd.DataFrame, raw: dict[str, dict], codes_of: CodesLoader = load_codes
                           ) -> dict[str, bool]:
    """Dataset -> whether an item may carry several labels, which decides how relevance is
    named. Records state it (``protocol.multi_label``); for a dataset whose records do not,
    the labels saved with one finished run decide (several labels on any item; single-label
    when no finished run's codes load)."""
    flags: dict[str, bool] = {}
    for dataset, runs in records.groupby("dataset", sort=True):
        stated = [protocol["multi_label"] for path in runs["path"]
                  if "multi_label" in (protocol := raw[path].get("protocol") or {})]
        finished = runs[runs["status"] == "done"].sort_values("path")
        if stated:
            flags[dataset] = any(stated)
        elif not finished.empty:
            found = first_codes(finished, codes_of)
            flags[dataset] = found is not None and bool((found[1]["query_labels"].sum(1) > 1).any()
                                                        or (found[1]["database_labels"].sum(1) > 1).any())
    return flags


def _shown(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def run_settings(record: dict) -> dict[str, Any] | None:
    """What may set a run apart from another run of its method in one table: its config keys and
    hyperparameters (one key space) but :data:`PER_RUN_KEYS`. A key added after older records
    were written counts at the value under which it changes nothing (:data:`NEUTRAL_VALUES`), as
    the fingerprint does. None for a record without a config (written by hand, or by a run that
    failed before it had one)."""
    config = record.get("config")
    if not isinstance(config, dict):
        return None
    values = {key: value for key, value in config.items() if key != "hparams" and key not in PER_RUN_KEYS}
    values.update(config.get("hparams") or {})
    return {**NEUTRAL_VALUES, **values}


def row_labels(runs: pd.DataFrame, raw: dict[str, dict]) -> pd.Series:
    """Each run's row in one table of ``runs``: its method's name, or, where that method's runs on
    one dataset differ in config (one tag holding a method at two learning rates, say), the name
    and the values that set the run apart, ``dsdh (lr=0.2)``: a row never mixes configs, and each
    row says what differs. Runs on different datasets are not compared (K and a dataset's own
    defaults differ there by design); a key that only some records state is compared among those
    (a record written before the key existed says nothing about it: ``?``); a run without a config
    keeps the plain name."""
    settings = {path: run_settings(raw[path]) for path in runs["path"]}
    labels = runs["method"].copy()
    for method, own in runs.groupby("method", sort=False):
        differing: set[str] = set()
        for _, same_dataset in own.groupby("dataset", sort=False):
            known = [found for path in same_dataset["path"] if (found := settings[path]) is not None]
            for key in {key for found in known for key in found}:
                if len({json.dumps(found[key], sort_keys=True, default=str) for found in known if key in found}) > 1:
                    differing.add(key)
        for index, path in own["path"].items():
            if differing and (found := settings[path]) is not None:
                shown = [f"{key}={_shown(found[key]) if key in found else '?'}" for key in sorted(differing)]
                labels[index] = f"{method} ({', '.join(shown)})"
    return labels


@dataclass
class Table:
    """One table of the report: its files, its numbers, what it holds and which page shows it."""

    paths: list[Path]
    table: MapTable
    kind: str  # supervised, unsupervised, gain, ablation or tag
    name: str  # how the summary names it (Markdown)
    tag: str | None = None
    appendix: bool = False

    def page_text(self) -> list[str]:
        """The table as the page shows it: its Markdown a level down, and links to its other files."""
        markdown = next(path for path in self.paths if path.suffix == ".md")
        text = [markdown.read_text().replace("# ", "## ", 1)]
        if markdown.with_suffix(".tex").exists():
            text.append(f"Also as [{markdown.stem}.tex]({markdown.stem}.tex) and "
                        f"[{markdown.stem}.csv]({markdown.stem}.csv).\n")
        return text


def write_tables(records: pd.DataFrame, out: Path, stem: str, title: str, *, ties: str, floors: Floors,
                 multi_label: dict[str, bool], methods: list[str] | None = None, config: str | None = None,
                 groups: dict[str, str] | None = None) -> tuple[MapTable, list[Path]]:
    """``<stem>.md`` and ``.tex`` (mAP@K under ``ties``, each dataset's relevance rule, the
    random-code floor row, the experiment file ``config`` if given; rows grouped by method
    family, or by ``groups``) and ``<stem>.csv`` (every metric and the floors, long form); ``stem``
    goes through :func:`hashbench.results.slug`, as a tag or dataset may hold any character.
    ``records`` may carry a ``row`` column (:func:`row_labels`)."""
    stem = slug(stem)
    table = map_table(records, methods or family_order(records), ties, floors=floors, multi_label=multi_label,
                      groups=groups)
    if config:  # a table copied out of the report still says which file reproduces it
        table.captions.append(f"config: {markdown_text(config)}")
    frame = long_form(records if methods is None else records[records["method"].isin(methods)], floors)
    csv_path = out / f"{stem}.csv"
    with atomic_write(csv_path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    return table, [_write(out / f"{stem}.md", to_markdown(table, title)),
                   _write(out / f"{stem}.tex", to_latex(table, title)), csv_path]


def holds_out(record: dict) -> bool:
    """Whether a run's queries were held-out training items (``validation > 0``): its mAP is a
    validation number, never a test one."""
    return bool((record.get("protocol") or {}).get("validation") or (record.get("config") or {}).get("validation"))


def ablation_families(records: pd.DataFrame) -> dict[str, list[str]]:
    """Each ablated method that has runs -> the methods whose ``method_info.ablation_of`` names it,
    both in record order (records without ``method_info`` ablate nothing)."""
    ablation_of = dict(zip(records["method"], records["ablation_of"], strict=True))
    families: dict[str, list[str]] = {}
    for method, base in ablation_of.items():
        if isinstance(base, str) and base in ablation_of:
            families.setdefault(base, []).append(method)
    return families


def embedded(figures: list[Path]) -> list[str]:
    """The page's lines that show each figure (its PNG) and link its PDF."""
    return [f"![{path.stem}](figures/{path.name})  \n[PDF](figures/{path.stem}.pdf)\n" for path in figures
            if path.suffix == ".png"]


def _listed(items: list[Any]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def what_was_run(records: pd.DataFrame, tables: list[Table], results_root: Path, command: str, cwd: Path) -> str:
    """The page's opening paragraph: which runs (methods, datasets, code lengths, seeds, tags), how
    many finished, and how the page was made, with no folder of the machine in it."""
    done = int((records["status"] == "done").sum())
    seeds, bits = sorted({int(s) for s in records["seed"]}), sorted({int(b) for b in records["bits"]})
    methods = records["method"].nunique()
    text = (f"{len(records)} runs of {methods} method{'s' * (methods > 1)} on "
            f"{_listed([markdown_text(d) for d in sorted(set(records['dataset']))])} at {_listed(bits)} bits, "
            f"seed{'s' * (len(seeds) > 1)} {_listed(seeds)}: {done} finished"
            + (f", {len(records) - done} not (see [Unfinished runs](#unfinished-runs))" if done < len(records) else "")
            + ". ")
    tagged = [table for table in tables if table.kind == "tag"]
    if tagged:
        aside = [markdown_code(table.tag) for table in tagged if table.appendix]
        text += (f"Untagged runs fill the main tables; each tag, a variant grid, has a table of its own "
                 f"({_listed([markdown_code(table.tag) for table in tagged])})"
                 + (f", on the [appendix page]({APPENDIX}) for {_listed(aside)}" if aside else "") + ". ")
    return text + (f"Generated on {date.today().isoformat()} by {markdown_code(without_machine_paths(command, cwd))} "
                   f"from the records in {markdown_code(display_path(results_root, cwd))}.\n")


def summary_section(tables: list[Table], untagged: pd.DataFrame, baseline: str | None,
                    families: dict[str, list[str]], ties: str) -> list[str]:
    """``## Summary``: the sentences of :mod:`hashbench.analysis.summary` for the main page's tables."""
    shown = {table.kind: table for table in tables if not table.appendix and table.kind != "tag"}
    items = []
    for table in tables:
        if table.appendix or table.kind not in ("supervised", "unsupervised", "tag"):
            continue
        if best := summary.best_per_column(table.table):
            items.append(f"- {table.name}, best per column: {' '.join(best)}")
        if table.kind != "tag" and (trend := summary.length_trend(table.table)):
            items.append(f"- {table.name}, by code length: {' '.join(trend)}")
    if "gain" in shown:
        gain = shown["gain"].table
        sentences = [sentence for kind, who in (("supervised", "The supervised methods"),
                                                ("unsupervised", "The unsupervised methods")) if kind in shown
                     and (sentence := summary.gain_range(gain, baseline, shown[kind].table.rows, who))]
        if sentences:
            items.append(f"- {shown['gain'].name}: {' '.join(sentences)}")
    if "ablation" in shown and (gaps := summary.ablation_gaps(shown["ablation"].table, families)):
        items.append(f"- Ablation: {' '.join(gaps)}")
    if gap := summary.tie_rule_gap(untagged):
        items.append(f"- Tie rules: {gap}")
    if not items:
        return []
    return ["## Summary\n", f"Generated from the tables above, so that no sentence can disagree with them: means over "
            f"seeds of mAP@K ({TIE_RULES[ties].description}); differences in points (mAP x100).\n", *items, ""]


def build_report(results_root: Path, out: Path, *, datasets: list[str] | None = None, bits: list[int] | None = None,
                 command: str = "hashbench report", tsne_bits: int | None = None,
                 tsne_methods: list[str] | None = None, notes: str | None = None,
                 ties: str = "expected", figures: bool = True, baseline: str | None = None,
                 config: str | None = None, appendix_notes: str | None = None,
                 appendix_tags: list[str] | None = None) -> list[Path]:
    """Write every table and figure for the records under ``results_root`` into ``out``, a
    README.md that shows them and, where there is something for it, an appendix.md (see the
    module docstring; ``figures=False``: the tables alone, in seconds).

    ``map.*`` (supervised methods), ``map_unsupervised.*`` (label-free ones), ``ablation.*`` and,
    with a ``baseline`` method, ``gain-over-<baseline>.md`` (every method's mean mAP minus the
    baseline's, column by column) hold untagged runs; each tag (a variant grid, e.g. one shared
    head for every method) gets its own ``map-<tag>.*``, so that its rows never mix with the main
    ones; the tables of validation runs and of ``appendix_tags`` go on the appendix page. Tables
    show mAP@K under the tie rule ``ties``; the CSV files keep every metric. Every table has the
    random codes' mAP as its floor (:func:`random_code_floors`), and tables, figures and page say
    per dataset what counts as relevant. ``config`` (an experiment file's path and sha256,
    :meth:`hashbench.experiment.Experiment.describe`) is named on the page and in every table's
    head. ``notes`` follow the results tables and their summary; ``appendix_notes`` open the
    appendix page. ``command`` and ``results_root`` are shown without the machine's folders.
    """
    check_choice("ties", ties, TIE_RULES)
    if not results_root.is_dir():
        raise HashbenchError(f"results folder not found: {results_root}")
    found = iter_records(results_root)  # every record read once, for the tables and the figures
    records = records_frame(found)
    if records.empty:
        raise HashbenchError(f"no run records under {results_root}")
    if datasets:
        records = records[records["dataset"].isin(datasets)]
    if bits:
        records = records[records["bits"].isin(bits)]
    if records.empty:
        raise HashbenchError("no records match the --datasets/--bits selection")
    out.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    raw = {str(folder): record for folder, record in found}
    untagged = records[records["tag"].isna()]
    untagged = untagged.assign(row=row_labels(untagged, raw))
    codes_of = CodesReader()  # damaged codes: one warning each, and the run is left out of what needs them
    multi_label = multi_label_by_dataset(records, raw, codes_of)
    write = partial(write_tables, out=out, ties=ties, floors=random_code_floors(records, codes_of),
                    multi_label=multi_label, config=config)
    tables: list[Table] = []
    supervised = untagged["supervised"].fillna(True).astype(bool)
    if supervised.any():
        table, paths = write(untagged[supervised], stem="map",
                             title="mAP by Hamming ranking: supervised methods (trained with labels)")
        tables.append(Table(paths, table, "supervised", "Supervised methods"))
    if (~supervised).any():
        table, paths = write(untagged[~supervised], stem="map_unsupervised",
                             title="mAP by Hamming ranking: unsupervised methods (no labels in training)")
        tables.append(Table(paths, table, "unsupervised", "Unsupervised methods"))
    if baseline is not None:
        if baseline not in set(untagged["method"]):
            raise HashbenchError(f"--baseline {baseline} has no untagged runs under {results_root}")
        gain = map_table(untagged, family_order(untagged), ties, multi_label=multi_label)
        if baseline not in gain.rows:
            raise HashbenchError(f"--baseline {baseline}: its untagged runs differ in config on one dataset "
                                 f"({', '.join(row for row in gain.rows if row.startswith(baseline + ' ('))}); "
                                 "give the runs to compare with a tag of their own")
        name = f"Gain over {markdown_text(baseline)}"
        tables.append(Table([_write(out / slug(f"gain-over-{baseline}.md"),
                                    gain_markdown(gain, baseline, f"{name} (mAP points)", config=config))],
                            gain, "gain", name))
    families = ablation_families(untagged)
    if families:
        methods = list(dict.fromkeys(m for base, variants in families.items() for m in (base, *variants)))
        table, paths = write(untagged, stem="ablation", methods=methods,
                             title=f"Ablation of {markdown_text(', '.join(families))} (mAP)",
                             groups={m: f"ablation of {base}" for base, variants in families.items()
                                     for m in (base, *variants)})
        tables.append(Table(paths, table, "ablation", "Ablation"))
    tags = sorted(records["tag"].dropna().unique())
    for tag in sorted(set(appendix_tags or ()) - set(tags)):
        warn(f"appendix_tags: no runs with the tag {tag!r} among the records selected")
    for tag in tags:
        runs = records[records["tag"] == tag]
        runs = runs.assign(row=row_labels(runs, raw))
        held_out = any(holds_out(raw[path]) for path in runs["path"])
        what = ("Validation mAP (held-out training items as queries, not the test queries)" if held_out
                else "mAP by Hamming ranking")
        table, paths = write(runs, stem=f"map-{tag}", title=f"{what}, tag {markdown_code(tag)}")
        tables.append(Table(paths, table, "tag", f"Tag {markdown_code(tag)}", tag=tag,
                            appendix=held_out or tag in (appendix_tags or ())))
    from hashbench.analysis.figures import write_figures
    from hashbench.analysis.retrieval_examples import write_retrieval_figures

    drawn = write_figures(untagged, raw, out, multi_label=multi_label, tsne_bits=tsne_bits,
                          tsne_methods=tsne_methods, codes_of=codes_of) if figures else []
    retrievals, missing_images = write_retrieval_figures(untagged, raw, out, codes_of) if figures else ([], [])
    aside = [table for table in tables if table.appendix]
    has_appendix = bool(aside or (appendix_notes or "").strip())
    page = ["# hashbench report\n", what_was_run(records, tables, results_root, command, cwd),
            *([f"Configured by the experiment file {markdown_text(config)}: `hashbench run --config` with "
               "it reruns its grids, `hashbench config show --config` prints every run's config.\n"]
              if config else []),
            "What counts as relevant, in every table and figure below:\n",
            *[f"- {markdown_text(dataset)}: {relevance_rule(flag)}" for dataset, flag in multi_label.items()], "",
            *([f"Validation and check tables{' and the notes on them' if (appendix_notes or '').strip() else ''}: "
               f"the [appendix page]({APPENDIX}).\n"] if has_appendix else [])]
    for table in tables:
        if not table.appendix:
            page += table.page_text()
    page += summary_section(tables, untagged, baseline, families, ties)
    unfinished = records[records["status"] != "done"]
    if not unfinished.empty:
        page.append("## Unfinished runs\n")
        page += ["- " + markdown_text(without_machine_paths(
            f"{r.method}{f' [{r.tag}]' if isinstance(r.tag, str) else ''} {r.dataset} {r.bits} bits seed {r.seed}: "
            f"{r.status}{': ' + r.reason if isinstance(r.reason, str) else ''}", cwd)) for r in unfinished.itertuples()]
        page.append("")
    if notes:
        page.append(notes.strip() + "\n")
    if drawn:
        page.append("## Figures\n\nFrom untagged runs.\n")
    page += embedded(drawn)
    if retrievals or missing_images:
        page.append("## Retrieval examples\n\nFixed queries (seeded) and their top-10 database images for the best "
                    "method and MLH; green: relevant, red: not; d: Hamming distance.\n")
        page += [f"- {markdown_text(without_machine_paths(line, cwd))}" for line in missing_images]
        page += [""] if missing_images else []
    page += embedded(retrievals)
    pages = [_write(out / "README.md", separate_tables("\n".join(page)))]
    if has_appendix:
        appendix = ["# hashbench report: appendix\n",
                    "Part of [the report](README.md), from the same records: tables that chose or checked the "
                    "recipes, not results. Validation runs hold out training items as queries and search the "
                    "database without them; their mAP is a validation number, never a test one.\n",
                    *([appendix_notes.strip() + "\n"] if (appendix_notes or "").strip() else [])]
        for table in aside:
            appendix += table.page_text()
        pages.append(_write(out / APPENDIX, separate_tables("\n".join(appendix))))
    return [*(path for table in tables for path in table.paths), *drawn, *retrievals, *pages]
