"""``hashbench report``: every table and figure from the records and saved codes, no retraining."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from hashbench.analysis.figures import write_figures
from hashbench.analysis.tables import TIE_RULES, long_form, map_table, to_latex, to_markdown
from hashbench.results import iter_records, records_frame, slug
from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError, check_choice


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def write_tables(records: pd.DataFrame, out: Path, stem: str, title: str, *, ties: str,
                 methods: list[str] | None = None) -> list[Path]:
    """``<stem>.md`` and ``.tex`` (mAP@K under ``ties``) and ``<stem>.csv`` (every metric, long form);
    ``stem`` goes through :func:`hashbench.results.slug`, as a tag or dataset may hold any character."""
    stem = slug(stem)
    table = map_table(records, methods, ties)
    frame = long_form(records if methods is None else records[records["method"].isin(methods)])
    csv_path = out / f"{stem}.csv"
    with atomic_write(csv_path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    return [_write(out / f"{stem}.md", to_markdown(table, title)), _write(out / f"{stem}.tex", to_latex(table, title)),
            csv_path]


def ablation_families(records: pd.DataFrame) -> dict[str, list[str]]:
    """Each ablated method that has runs -> the methods whose ``method_info.ablation_of`` names it,
    both in record order (records without ``method_info`` ablate nothing)."""
    ablation_of = dict(zip(records["method"], records["ablation_of"], strict=True))
    families: dict[str, list[str]] = {}
    for method, base in ablation_of.items():
        if isinstance(base, str) and base in ablation_of:
            families.setdefault(base, []).append(method)
    return families


def build_report(results_root: Path, out: Path, *, datasets: list[str] | None = None, bits: list[int] | None = None,
                 command: str = "hashbench report", tsne_bits: int | None = None, notes: str | None = None,
                 ties: str = "expected") -> list[Path]:
    """Write every table and figure for the records under ``results_root`` into ``out``,
    and a README.md that shows them all.

    ``map.*`` and ``ablation.*`` hold untagged runs; each tag (a variant grid, e.g. one shared
    head for every method) gets its own ``map-<tag>.*``, so that its rows never mix with the main
    ones. Tables show mAP@K under the tie rule ``ties``; the CSV files keep every metric.
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
    tables: list[Path] = []
    if not untagged.empty:
        tables += write_tables(untagged, out, "map", "mAP by Hamming ranking", ties=ties)
    families = ablation_families(untagged)
    if families:
        methods = list(dict.fromkeys(m for base, variants in families.items() for m in (base, *variants)))
        tables += write_tables(untagged, out, "ablation", f"Ablation of {', '.join(families)} (mAP)", ties=ties,
                               methods=methods)
    for tag in sorted(records["tag"].dropna().unique()):
        tables += write_tables(records[records["tag"] == tag], out, f"map-{tag}",
                               f"mAP by Hamming ranking, tag `{tag}`", ties=ties)
    raw = {str(folder): record for folder, record in found}
    figures = write_figures(untagged, raw, out, tsne_bits=tsne_bits)
    sections = [f"# hashbench report\n\nGenerated on {date.today().isoformat()} by `{command}` "
                f"from {len(records)} run records in `{results_root}` "
                f"({(records['status'] == 'done').sum()} finished).\n"]
    if notes:
        sections.append(notes.strip() + "\n")
    unfinished = records[records["status"] != "done"]
    if not unfinished.empty:
        sections.append("## Unfinished runs\n")
        sections += [f"- {r.method}{f' [{r.tag}]' if isinstance(r.tag, str) else ''} {r.dataset} {r.bits} bits "
                     f"seed {r.seed}: {r.status}{': ' + r.reason if isinstance(r.reason, str) else ''}"
                     for r in unfinished.itertuples()]
        sections.append("")
    for path in tables:
        if path.suffix == ".md":
            sections.append(path.read_text().replace("# ", "## ", 1))
            sections.append(f"Also as [{path.stem}.tex]({path.stem}.tex) and [{path.stem}.csv]({path.stem}.csv).\n")
    if figures:
        sections.append("## Figures\n\nFrom untagged runs.\n")
    for path in figures:
        if path.suffix == ".png":
            sections.append(f"![{path.stem}](figures/{path.name})  \n[PDF](figures/{path.stem}.pdf)\n")
    return [*tables, *figures, _write(out / "README.md", "\n".join(sections))]
