"""``hashbench report``: every table and figure from the records and saved codes, no retraining."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from hashbench.analysis.figures import write_figures
from hashbench.analysis.tables import long_form, map_table, to_latex, to_markdown
from hashbench.results import iter_records, records_frame
from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError

#: The MLH ablation variants, in the order of the paper's ablation table.
ABLATION_METHODS = ["mlh", "mlh-center", "mlh-pairwise", "mlh-no-moh", "mlh-moe", "mlh-moh-unshared"]


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def write_tables(records: pd.DataFrame, out: Path, stem: str, title: str,
                 methods: list[str] | None = None) -> list[Path]:
    table = map_table(records, methods)
    frame = long_form(records if methods is None else records[records["method"].isin(methods)])
    csv_path = out / f"{stem}.csv"
    with atomic_write(csv_path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    return [_write(out / f"{stem}.md", to_markdown(table, title)), _write(out / f"{stem}.tex", to_latex(table, title)),
            csv_path]


def build_report(results_root: Path, out: Path, *, datasets: list[str] | None = None, bits: list[int] | None = None,
                 command: str = "hashbench report", tsne_bits: int | None = None, notes: str | None = None
                 ) -> list[Path]:
    """Write every table and figure for the records under ``results_root`` into ``out``,
    and a README.md that shows them all."""
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
    written = write_tables(records, out, "map", "mAP by Hamming ranking")
    ablation = [m for m in ABLATION_METHODS if m in set(records["method"])]
    if "mlh" in ablation and len(ablation) > 1:
        written += write_tables(records, out, "ablation", "MLH ablation (mAP)", ablation)
    raw = {str(folder): record for folder, record in found}
    figures = write_figures(records, raw, out, tsne_bits=tsne_bits)
    sections = [f"# hashbench report\n\nGenerated on {date.today().isoformat()} by `{command}` "
                f"from {len(records)} run records in `{results_root}` "
                f"({(records['status'] == 'done').sum()} finished).\n"]
    if notes:
        sections.append(notes.strip() + "\n")
    unfinished = records[records["status"] != "done"]
    if not unfinished.empty:
        sections.append("## Unfinished runs\n")
        sections += [f"- {r.method} {r.dataset} {r.bits} bits seed {r.seed}: {r.status}"
                     f"{': ' + r.reason if isinstance(r.reason, str) else ''}" for r in unfinished.itertuples()]
        sections.append("")
    for path in written:
        if path.suffix == ".md":
            sections.append(path.read_text().replace("# ", "## ", 1))
            sections.append(f"Also as [{path.stem}.tex]({path.stem}.tex) and [{path.stem}.csv]({path.stem}.csv).\n")
    sections.append("## Figures\n")
    for path in figures:
        if path.suffix == ".png":
            sections.append(f"![{path.stem}](figures/{path.name})  \n[PDF](figures/{path.stem}.pdf)\n")
    written += figures
    written.append(_write(out / "README.md", "\n".join(sections)))
    return written
