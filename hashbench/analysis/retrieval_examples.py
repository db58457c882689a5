"""Retrieval examples for the report: a few fixed queries and their top-10 database images.

Per dataset and bit length, one figure: :data:`QUERIES` queries drawn with a fixed seed from
the protocol's queries, and for the best method (highest mean mAP over seeds, ties expected)
and MLH, when it has runs, each query's top-10 by Hamming distance (ties by database index),
from the saved codes of the method's first seed. Each result is framed green when it shares
a label with the query and red otherwise, its Hamming distance under it. The images come
from the run's dataset (its config's data root); where they cannot be loaded (data root
absent, say), the report says so in a line instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hashbench.analysis.figures import save_figure
from hashbench.data.datasets import HashingDataset
from hashbench.deploy.index import BinaryIndex
from hashbench.deploy.search import item_pixels, run_dataset
from hashbench.results import CodesLoader, load_codes, slug
from hashbench.validation import HashbenchError

QUERIES = 4
TOPK = 10
SEED = 0
RELEVANT, IRRELEVANT = "#1a9850", "#d73027"


def chosen_methods(runs: pd.DataFrame) -> list[str]:
    """The best method by mean mAP (ties expected; name breaks a tie) and MLH when it ran."""
    means = runs.groupby("method")["map_expected"].mean().dropna()
    if means.empty:
        return []
    best = sorted(means.index, key=lambda method: (-means[method], method))[0]
    return [best, *(["mlh"] if "mlh" in means.index and best != "mlh" else [])]


def _image(pixels: torch.Tensor) -> np.ndarray:
    return pixels.permute(1, 2, 0).numpy()


def retrieval_figure(dataset: HashingDataset, codes_of: dict[str, dict[str, np.ndarray]], title: str) -> plt.Figure:
    """One row per (method, query): the query, then its top-10 framed by relevance with distances."""
    first = next(iter(codes_of.values()))
    rng = np.random.default_rng(SEED)
    picks = np.sort(rng.choice(len(first["query_index"]), min(QUERIES, len(first["query_index"])), replace=False))
    found = {method: BinaryIndex(codes["database_codes"], backend="kernel").search(codes["query_codes"][picks], TOPK)
             for method, codes in codes_of.items()}  # one index and one search per method
    rows = [(method, row, int(q)) for method in codes_of for row, q in enumerate(picks)]
    fig, axes = plt.subplots(len(rows), TOPK + 1, figsize=(1.1 * (TOPK + 1), 1.3 * len(rows)), squeeze=False)
    for row, (method, pick, q) in enumerate(rows):
        codes = codes_of[method]
        positions, distances = found[method].indices[pick], found[method].distances[pick]
        items = [int(codes["query_index"][q]), *(int(codes["database_index"][p]) for p in positions)]
        pixels = item_pixels(dataset, items)
        relevant = (codes["database_labels"][positions] & codes["query_labels"][q]).any(1)
        for col, ax in enumerate(axes[row]):
            ax.imshow(_image(pixels[col]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(method, fontsize=7)
                ax.set_title(f"query {items[0]}", fontsize=6)
                continue
            colour = RELEVANT if relevant[col - 1] else IRRELEVANT
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            ax.set_xlabel(f"d={distances[col - 1]}", fontsize=6, color=colour)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_retrieval_figures(records: pd.DataFrame, raw: dict[str, dict], out: Path,
                            codes_of: CodesLoader = load_codes) -> tuple[list[Path], list[str]]:
    """The figures (PNG and PDF under ``figures/``), and a line for each (dataset, bits) whose
    images could not be loaded; a run whose codes ``codes_of`` skips is left out."""
    written: list[Path] = []
    notes: list[str] = []
    datasets: dict[str, HashingDataset | str] = {}
    done = records[records["status"] == "done"]
    for (name, bits), runs in done.groupby(["dataset", "bits"], sort=True):
        methods = chosen_methods(runs)
        if not methods:
            continue
        first = runs.sort_values(["seed", "path"]).drop_duplicates("method").set_index("method")["path"]
        if name not in datasets:
            try:
                dataset = run_dataset(raw[first[methods[0]]])
                item_pixels(dataset, [0])  # loads the images, or fails here
                datasets[name] = dataset
            except (HashbenchError, OSError, KeyError) as err:
                datasets[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
        dataset = datasets[name]
        if isinstance(dataset, str):
            notes.append(f"{name}, {bits} bits: no retrieval examples, the images are not available ({dataset}).")
            continue
        loaded = {method: codes_of(Path(first[method])) for method in methods}
        loaded = {method: codes for method, codes in loaded.items() if codes is not None}
        if not loaded:
            continue
        fig = retrieval_figure(dataset, loaded, f"Top-{TOPK} retrievals ({name}, {bits} bits; green: relevant)")
        written += save_figure(fig, out / "figures", slug(f"retrieval_{name}_{bits}"))
    return written, notes
