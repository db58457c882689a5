"""Figures from the saved codes and records: PR curves by Hamming radius, precision@N,
t-SNE of database codes, code-distance distributions and training curves.

Each figure is written as PNG (for reading) and PDF (for papers) under ``figures/``; one
colour per method, the same in every figure, from seaborn's colour-blind palette.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from hashbench.eval import RetrievalResult, evaluate
from hashbench.results import load_codes, slug

#: Database items drawn (seeded) for t-SNE and for the pair-distance histograms.
TSNE_POINTS = 1000
PAIR_SAMPLE = 500
SEED = 0


def method_colours(methods: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    names = sorted(set(methods))
    palette = sns.color_palette("colorblind", n_colors=max(len(names), 1))
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _save(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
    """``<stem>.png`` and ``.pdf``; ``stem`` goes through :func:`hashbench.results.slug`, as it
    holds dataset names such as ``listfile:/data/x``."""
    stem = slug(stem)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "Producer": None})
    plt.close(fig)
    return paths


def _style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


Codes = dict[str, np.ndarray]  # the arrays of one run's codes.npz


def curves_by_method(runs: pd.DataFrame, codes_of: dict[str, Codes]) -> dict[str, list[RetrievalResult]]:
    """Recompute every retrieval curve of the finished runs from their codes."""
    out: dict[str, list[RetrievalResult]] = {}
    for row in runs.itertuples():
        codes = codes_of[row.path]
        out.setdefault(row.method, []).append(evaluate(
            codes["query_codes"], codes["database_codes"], codes["query_labels"], codes["database_labels"],
            topks=(int(row.topk),)))
    return out


def pr_figure(curves: dict[str, list[RetrievalResult]], colours: dict, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for method, results in sorted(curves.items()):
        precision = np.mean([r.radius_precision for r in results], axis=0)
        recall = np.mean([r.radius_recall for r in results], axis=0)
        ax.plot(recall, precision, marker="o", markersize=2.5, label=method, color=colours[method])
    ax.set(xlabel="Recall", ylabel="Precision", title=title, xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=7)
    return fig


def precision_at_n_figure(curves: dict[str, list[RetrievalResult]], colours: dict, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for method, results in sorted(curves.items()):
        ax.plot(results[0].cutoffs, np.mean([r.precision_at for r in results], axis=0), marker="o", markersize=2.5,
                label=method, color=colours[method])
    ax.set(xlabel="Number of top retrieved items N", ylabel="Precision@N", title=title, ylim=(0, 1.02))
    ax.legend(fontsize=7)
    return fig


def pair_names(multi_label: bool) -> tuple[str, str]:
    """How relevant and irrelevant pairs are named: with several labels per item a pair is
    relevant when it shares any label, which "same class" would misstate."""
    return ("shares a label", "shares none") if multi_label else ("same class", "different class")


#: More classes than this get no legend: it would cover the plot; the title says so.
LEGEND_CLASSES = 20


def tsne_figure(codes: Codes, title: str, *, multi_label: bool, class_names: list[str] | None = None) -> plt.Figure:
    """t-SNE of seeded database codes, coloured by what a point's labels honestly give.

    Single-label data: one colour per class, with a legend of ``class_names`` (class indices
    where a name is missing). Multi-label data has no one class per point, and any one of its
    labels would be an arbitrary pick, so points are coloured by how many labels they carry,
    with a colour bar; the title says which colouring is used.
    """
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(SEED)
    n_db = len(codes["database_codes"])
    pick = np.sort(rng.choice(n_db, size=min(TSNE_POINTS, n_db), replace=False))
    points = codes["database_codes"][pick].astype(np.float32) * 2 - 1
    labels = codes["database_labels"][pick]
    embedded = TSNE(n_components=2, init="pca", random_state=SEED, perplexity=min(30, len(pick) - 1),
                    max_iter=300).fit_transform(points)
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    if multi_label:
        counts = labels.sum(1).astype(int)
        levels = np.arange(counts.min(), counts.max() + 1)
        scatter = ax.scatter(embedded[:, 0], embedded[:, 1], c=counts, cmap=plt.get_cmap("viridis", len(levels)),
                             vmin=levels[0] - 0.5, vmax=levels[-1] + 0.5, s=3, linewidths=0)
        fig.colorbar(scatter, ax=ax, ticks=levels, label="labels per image")
        colouring = "number of labels per image (multi-label data)"
    else:
        classes = labels.argmax(1)
        n_classes = labels.shape[1]
        palette = sns.color_palette("colorblind" if n_classes <= 10 else "husl", n_colors=n_classes)
        for c in np.unique(classes):
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.scatter(*embedded[classes == c].T, color=palette[c], s=3, linewidths=0, label=name)
        if n_classes <= LEGEND_CLASSES:
            ax.legend(fontsize=6, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
            colouring = "class"
        else:
            colouring = f"class ({n_classes} classes, too many for a legend)"
    ax.set(title=f"{title}\ncolour: {colouring}", xticks=[], yticks=[])
    return fig


def pair_distances(codes: Codes) -> tuple[np.ndarray, np.ndarray, int]:
    """Hamming distances of sampled query-database pairs, split into relevant (sharing a
    label) and irrelevant ones."""
    rng = np.random.default_rng(SEED)
    q_pick = rng.choice(len(codes["query_codes"]), size=min(PAIR_SAMPLE, len(codes["query_codes"])), replace=False)
    d_pick = rng.choice(len(codes["database_codes"]), size=min(PAIR_SAMPLE, len(codes["database_codes"])),
                        replace=False)
    q, d = codes["query_codes"][q_pick], codes["database_codes"][d_pick]
    distance = (q[:, None, :] != d[None, :, :]).sum(-1)
    shared = (codes["query_labels"][q_pick].astype(int) @ codes["database_labels"][d_pick].T.astype(int)) > 0
    return distance[shared], distance[~shared], q.shape[1]


def code_distribution_figure(codes_by_method: dict[str, Codes], colours: dict, title: str, *,
                             multi_label: bool) -> plt.Figure:
    """In the spirit of the MLH paper's Fig. 5: distance histograms of relevant vs irrelevant
    pairs, named as the data defines them (same class, or shares a label)."""
    order = sorted(codes_by_method)
    columns = min(5, len(order))
    rows = -(-len(order) // columns)
    relevant_name, irrelevant_name = pair_names(multi_label)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.4 * rows + 0.4), sharey=True, squeeze=False)
    for ax, method in zip(axes.flat, order, strict=False):
        relevant, irrelevant, bits = pair_distances(codes_by_method[method])
        bins = np.arange(bits + 2) - 0.5
        ax.hist(relevant, bins=bins, density=True, alpha=0.75, color=colours[method], label=relevant_name)
        ax.hist(irrelevant, bins=bins, density=True, histtype="step", color="black", label=irrelevant_name)
        ax.set(title=method, xlabel="Hamming distance")
    for ax in list(axes.flat)[len(order):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("Density")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.suptitle(title)
    return fig


def training_curves_figure(records: list[dict], colours: dict, title: str) -> plt.Figure | None:
    """Per-epoch training loss (first seed of each method)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    drawn = False
    for record in sorted(records, key=lambda r: (r["method"], r["seed"])):
        history = record.get("history") or []
        if not history or any(line.get_label() == record["method"] for line in ax.get_lines()):
            continue
        ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], label=record["method"],
                color=colours[record["method"]])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="Epoch", ylabel="Training loss", title=title, yscale="log")
    ax.legend(fontsize=7)
    return fig


def class_names_of(records: pd.DataFrame, raw: dict[str, dict]) -> list[str] | None:
    """The first ``protocol.class_names`` among these records (older records have none)."""
    return next((names for path in records["path"] if (names := (raw[path].get("protocol") or {}).get("class_names"))),
                None)


def write_figures(records: pd.DataFrame, raw: dict[str, dict], out: Path, *, multi_label: dict[str, bool],
                  tsne_bits: int | None = None) -> list[Path]:
    """Every figure for the finished runs in ``records`` (``raw`` maps run path -> record;
    ``multi_label`` maps each dataset to whether its items may carry several labels, which
    decides how pairs are named and how t-SNE points are coloured).

    Curves are keyed by method, so ``records`` should hold one variant grid: the report passes
    the untagged runs only.
    """
    _style()
    folder = out / "figures"
    done = records[records["status"] == "done"]
    colours = method_colours(records["method"])
    written: list[Path] = []
    tsne_at = {dataset: tsne_bits if tsne_bits in set(runs["bits"]) else int(runs["bits"].max())
               for dataset, runs in done.groupby("dataset")}
    for (dataset, bits), runs in done.groupby(["dataset", "bits"], sort=True):
        codes_of = {path: load_codes(Path(path)) for path in runs["path"]}  # each file read once
        curves = curves_by_method(runs, codes_of)
        where = f"{dataset}, {bits} bits"
        written += _save(pr_figure(curves, colours, f"PR by Hamming radius ({where})"), folder,
                         f"pr_{dataset}_{bits}")
        written += _save(precision_at_n_figure(curves, colours, f"Precision@N ({where})"), folder,
                         f"precision_at_n_{dataset}_{bits}")
        first = {row.method: codes_of[row.path]
                 for row in runs.sort_values("seed").drop_duplicates("method").itertuples()}
        written += _save(code_distribution_figure(first, colours, f"Code distances ({where})",
                                                  multi_label=multi_label[dataset]),
                         folder, f"code_distribution_{dataset}_{bits}")
        curves_fig = training_curves_figure([raw[p] for p in runs["path"]], colours, f"Training loss ({where})")
        if curves_fig is not None:
            written += _save(curves_fig, folder, f"training_{dataset}_{bits}")
        if bits == tsne_at[dataset]:
            class_names = class_names_of(runs, raw)
            for method, codes in sorted(first.items()):
                fig = tsne_figure(codes, f"t-SNE: {method}, {dataset}, {bits} bits", multi_label=multi_label[dataset],
                                  class_names=class_names)
                written += _save(fig, folder, f"tsne_{dataset}_{method}_{bits}")
    return written
