"""Sentences about the report's tables, generated from the tables' own numbers.

A hand-written claim about a table ("X beats every method", "the two differ by 0.1 to 1.5
points") goes stale the day a run is added or a recipe changes, and then the page contradicts
itself. Every number the report states in words is computed here from the same cells the
tables print (:class:`~hashbench.analysis.tables.MapTable`: means over seeds under one tie
rule), with the same rounding where the table shows the number (gains: one decimal, as
:func:`~hashbench.analysis.tables.gain_markdown`), so a sentence cannot disagree with its table.
Record text in a sentence goes through :func:`~hashbench.analysis.tables.markdown_text`.
"""

from __future__ import annotations

import pandas as pd

from hashbench.analysis.tables import MapTable, gain_points, markdown_text, row_of


def _column(dataset: str, bits: int) -> str:
    return f"{markdown_text(dataset)} {bits} bits"


def best_per_column(table: MapTable) -> list[str]:
    """Per dataset, one sentence: the row with the highest mean mAP at each code length, its mAP
    (4 decimals, as the table) and how far ahead of the next row it is, in points (of equal means,
    the row last by name leads, as the table's bold says)."""
    sentences = []
    for dataset in dict.fromkeys(d for d, _ in table.columns):
        parts = []
        for bits in [b for d, b in table.columns if d == dataset]:
            ranked = sorted(((cell.mean, row) for row in table.rows
                             if (cell := table.cells[(row, dataset, bits)]).mean is not None), reverse=True)
            if not ranked:
                continue
            (best, leader), rest = ranked[0], ranked[1:]
            ahead = (f"; {markdown_text(rest[0][1])} next, {100 * (best - rest[0][0]):.2f} points lower" if rest
                     else "; the only row with a number")
            parts.append(f"at {bits} bits {markdown_text(leader)} ({best:.4f}{ahead})")
        if parts:
            sentences.append(f"{markdown_text(dataset)}: best {', '.join(parts)}.")
    return sentences


def gain_range(table: MapTable, baseline: str, rows: list[str], who: str) -> str | None:
    """One sentence on ``rows``' gains over ``baseline`` (points, one decimal, as the gain table):
    the lowest and the highest with their row and column, and which rows fall below the baseline
    in some column. None when no row of ``rows`` has a gain."""
    gains = sorted(((gain, row, column) for row in rows if row != baseline for column in table.columns
                    if (gain := gain_points(table, row, baseline, column)) is not None),
                   key=lambda item: (item[0], item[1], item[2]))
    if not gains:
        return None
    (low, low_row, low_column), (high, high_row, high_column) = gains[0], max(gains, key=lambda item: item[0])
    below = list(dict.fromkeys(row for gain, row, _ in gains if gain < 0))
    named = list(dict.fromkeys(row for _, row, _ in gains))
    verdict = (f"every one of them is above {markdown_text(baseline)} in every column" if not below else
               f"below {markdown_text(baseline)} in some column: {', '.join(map(markdown_text, below))} "
               f"({len(below)} of {len(named)})")
    return (f"{who} gain from {low:+.1f} points ({markdown_text(low_row)}, {_column(*low_column)}) to {high:+.1f} "
            f"({markdown_text(high_row)}, {_column(*high_column)}) over {markdown_text(baseline)}; {verdict}.")


def ablation_gaps(table: MapTable, families: dict[str, list[str]]) -> list[str]:
    """Per ablation variant, one sentence: its mAP minus its base method's, lowest to highest over
    the columns where both have runs (points, one decimal), and in how many it is above."""
    sentences = []
    for base, variants in families.items():
        for variant in variants:
            gains = [gain for column in table.columns
                     if (gain := gain_points(table, variant, base, column)) is not None]
            if not gains:
                continue
            above = sum(gain > 0 for gain in gains)
            spread = (f"{gains[0]:+.1f} points" if len(gains) == 1 else
                      f"{min(gains):+.1f} to {max(gains):+.1f} points")
            sentences.append(f"{markdown_text(variant)} minus {markdown_text(base)}: {spread}, above it in {above} of "
                             f"{len(gains)} column{'s' if len(gains) > 1 else ''}.")
    return sentences


def length_trend(table: MapTable) -> list[str]:
    """Per dataset with two code lengths or more, one sentence naming the rows whose mean mAP at
    the longest length is below the one at the shortest (the change in points, largest fall first)."""
    sentences = []
    for dataset in dict.fromkeys(d for d, _ in table.columns):
        lengths = [b for d, b in table.columns if d == dataset]
        if len(lengths) < 2:
            continue
        short, long = lengths[0], lengths[-1]
        changes = [(100 * (end.mean - start.mean), row) for row in table.rows
                   if (start := table.cells[(row, dataset, short)]).mean is not None
                   and (end := table.cells[(row, dataset, long)]).mean is not None]
        if not changes:
            continue
        falls = sorted((change, row) for change, row in changes if change < 0)
        where = f"{markdown_text(dataset)}: "
        if falls:
            named = ", ".join(f"{markdown_text(row)} ({change:+.1f} points)" for change, row in falls)
            sentences.append(f"{where}lower at {long} bits than at {short} bits for {named}; {len(falls)} of "
                             f"{len(changes)} rows.")
        else:
            sentences.append(f"{where}no row is lower at {long} bits than at {short} bits ({len(changes)} "
                             f"row{'s' * (len(changes) > 1)}).")
    return sentences


def tie_rule_gap(records: pd.DataFrame) -> str | None:
    """How far the two tie rules' mAP@K lie apart: over the cells (row, dataset, bits) of the
    finished ``records`` that have both, the smallest and the largest distance between their
    means over seeds (points, two decimals), the cell of the largest and which rule is higher
    there. None without such a cell."""
    done = records[(records["status"] == "done") & records["map_index"].notna() & records["map_expected"].notna()]
    if done.empty:
        return None
    gap = (100 * (done["map_expected"] - done["map_index"])).groupby(
        [row_of(done), done["dataset"], done["bits"]]).mean()
    size = gap.abs()
    (row, dataset, bits) = sorted(size.index[size == size.max()])[0]
    higher = "map_expected@K" if gap[(row, dataset, bits)] > 0 else "map@K"
    return (f"map_expected@K (ties: expectation over orders) and map@K (ties broken by database index) differ by "
            f"{size.min():.2f} to {size.max():.2f} points in a cell (means over seeds), most for "
            f"{markdown_text(row)} ({_column(dataset, int(bits))}), where {higher} is higher.")
