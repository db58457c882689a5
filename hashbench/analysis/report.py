"""``hashbench report``: every table and figure from the records and saved codes, no retraining."""

from __future__ import annotations

from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.analysis.tables import (
    FLOOR_QUERIES,
    TIE_RULES,
    Floors,
    RandomFloor,
    family_order,
    gain_markdown,
    long_form,
    map_table,
    markdown_code,
    markdown_text,
    relevance_rule,
    to_latex,
    to_markdown,
)
from hashbench.config import BITS
from hashbench.eval import mean_average_precision
from hashbench.results import CodesLoader, CodesReader, iter_records, load_codes, records_frame, slug
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
    "notes": text(None, nullable=True, help="a Markdown file whose text opens the report page"),
    "ties": choice("expected", tuple(TIE_RULES),
                   help="mAP in the tables with ties at equal Hamming distance as the expectation over random "
                        "orders (independent of database order) or broken by database index"),
    "baseline": text(None, nullable=True, help="add a table of every method's mAP gain over this one (e.g. itq)"),
    "figures": flag(True, help="draw the figures (PR, P@N, code distances, training curves, t-SNE)"),
}


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


def write_tables(records: pd.DataFrame, out: Path, stem: str, title: str, *, ties: str, floors: Floors,
                 multi_label: dict[str, bool], methods: list[str] | None = None, config: str | None = None
                 ) -> list[Path]:
    """``<stem>.md`` and ``.tex`` (mAP@K under ``ties``, each dataset's relevance rule, the
    random-code floor row, the experiment file ``config`` if given; rows grouped by method
    family) and ``<stem>.csv`` (every metric and the floors, long form); ``stem`` goes through
    :func:`hashbench.results.slug`, as a tag or dataset may hold any character."""
    stem = slug(stem)
    table = map_table(records, methods or family_order(records), ties, floors=floors, multi_label=multi_label)
    if config:  # a table copied out of the report still says which file reproduces it
        table.captions.append(f"config: {markdown_text(config)}")
    frame = long_form(records if methods is None else records[records["method"].isin(methods)], floors)
    csv_path = out / f"{stem}.csv"
    with atomic_write(csv_path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    return [_write(out / f"{stem}.md", to_markdown(table, title)), _write(out / f"{stem}.tex", to_latex(table, title)),
            csv_path]


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


def build_report(results_root: Path, out: Path, *, datasets: list[str] | None = None, bits: list[int] | None = None,
                 command: str = "hashbench report", tsne_bits: int | None = None,
                 tsne_methods: list[str] | None = None, notes: str | None = None,
                 ties: str = "expected", figures: bool = True, baseline: str | None = None,
                 config: str | None = None) -> list[Path]:
    """Write every table and figure for the records under ``results_root`` into ``out``,
    and a README.md that shows them all (``figures=False``: the tables alone, in seconds).

    ``map.*`` (supervised methods), ``map_unsupervised.*`` (label-free ones), ``ablation.*`` and,
    with a ``baseline`` method, ``gain-over-<baseline>.md`` (every method's mean mAP minus the
    baseline's, column by column) hold untagged runs; each tag (a variant grid, e.g. one shared
    head for every method) gets its own ``map-<tag>.*``, so that its rows never mix with the main
    ones. Tables show mAP@K under the tie rule ``ties``; the CSV files keep every metric. Every
    table has the random codes' mAP as its floor (:func:`random_code_floors`), and tables,
    figures and page say per dataset what counts as relevant. ``config`` (an experiment file's
    path and sha256, :meth:`hashbench.experiment.Experiment.describe`) is named on the page and
    in every table's head.
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
    untagged = records[records["tag"].isna()]
    raw = {str(folder): record for folder, record in found}
    codes_of = CodesReader()  # damaged codes: one warning each, and the run is left out of what needs them
    multi_label = multi_label_by_dataset(records, raw, codes_of)
    write = partial(write_tables, out=out, ties=ties, floors=random_code_floors(records, codes_of),
                    multi_label=multi_label, config=config)
    tables: list[Path] = []
    supervised = untagged["supervised"].fillna(True).astype(bool)
    if supervised.any():
        tables += write(untagged[supervised], stem="map",
                        title="mAP by Hamming ranking: supervised methods (trained with labels)")
    if (~supervised).any():
        tables += write(untagged[~supervised], stem="map_unsupervised",
                        title="mAP by Hamming ranking: unsupervised methods (no labels in training)")
    if baseline is not None:
        if baseline not in set(untagged["method"]):
            raise HashbenchError(f"--baseline {baseline} has no untagged runs under {results_root}")
        gain = map_table(untagged, family_order(untagged), ties, multi_label=multi_label)
        tables.append(_write(out / slug(f"gain-over-{baseline}.md"),
                             gain_markdown(gain, baseline, f"Gain over {markdown_text(baseline)} (mAP points)",
                                           config=config)))
    families = ablation_families(untagged)
    if families:
        methods = list(dict.fromkeys(m for base, variants in families.items() for m in (base, *variants)))
        tables += write(untagged, stem="ablation", title=f"Ablation of {markdown_text(', '.join(families))} (mAP)",
                        methods=methods)
    for tag in sorted(records["tag"].dropna().unique()):
        runs = records[records["tag"] == tag]
        held_out = any(holds_out(raw[path]) for path in runs["path"])
        what = ("Validation mAP (held-out training items as queries, not the test queries)" if held_out
                else "mAP by Hamming ranking")
        tables += write(runs, stem=f"map-{tag}", title=f"{what}, tag {markdown_code(tag)}")
    from hashbench.analysis.figures import write_figures
    from hashbench.analysis.retrieval_examples import write_retrieval_figures

    drawn = write_figures(untagged, raw, out, multi_label=multi_label, tsne_bits=tsne_bits,
                          tsne_methods=tsne_methods, codes_of=codes_of) if figures else []
    retrievals, missing_images = write_retrieval_figures(untagged, raw, out, codes_of) if figures else ([], [])
    sections = [f"# hashbench report\n\nGenerated on {date.today().isoformat()} by {markdown_code(command)} "
                f"from {len(records)} run records in {markdown_code(results_root)} "
                f"({(records['status'] == 'done').sum()} finished).\n",
                *([f"Configured by the experiment file {markdown_text(config)}: `hashbench run --config` with "
                   "it reruns its grids, `hashbench config show --config` prints every run's config.\n"]
                  if config else []),
                "What counts as relevant, in every table and figure below:\n",
                *[f"- {markdown_text(dataset)}: {relevance_rule(flag)}" for dataset, flag in multi_label.items()], ""]
    if notes:
        sections.append(notes.strip() + "\n")
    unfinished = records[records["status"] != "done"]
    if not unfinished.empty:
        sections.append("## Unfinished runs\n")
        sections += ["- " + markdown_text(f"{r.method}{f' [{r.tag}]' if isinstance(r.tag, str) else ''} {r.dataset} "
                                          f"{r.bits} bits seed {r.seed}: {r.status}"
                                          f"{': ' + r.reason if isinstance(r.reason, str) else ''}")
                     for r in unfinished.itertuples()]
        sections.append("")
    for path in tables:
        if path.suffix == ".md":
            sections.append(path.read_text().replace("# ", "## ", 1))
            if path.with_suffix(".tex").exists():
                sections.append(f"Also as [{path.stem}.tex]({path.stem}.tex) and [{path.stem}.csv]({path.stem}.csv).\n")
    if drawn:
        sections.append("## Figures\n\nFrom untagged runs.\n")
    sections += embedded(drawn)
    if retrievals or missing_images:
        sections.append("## Retrieval examples\n\nFixed queries (seeded) and their top-10 database images for the best "
                        "method and MLH; green: relevant, red: not; d: Hamming distance.\n")
        sections += [f"- {markdown_text(line)}" for line in missing_images] + ([""] if missing_images else [])
    sections += embedded(retrievals)
    return [*tables, *drawn, *retrievals, _write(out / "README.md", "\n".join(sections))]
