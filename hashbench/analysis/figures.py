"""Figures from the saved codes and records: PR curves by Hamming radius, precision@N,
t-SNE of database codes, code-distance distributions and training curves.

Each figure is written as PNG (for reading) and PDF (for papers) under ``figures/``. Every
method keeps one colour and marker in every figure (:func:`method_styles`); curves are drawn
on one panel per method family (pairwise, center, classification, ...), the family's
methods in colour over the others in grey, so figures stay readable at twenty methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from hashbench.eval import RetrievalResult, evaluate
from hashbench.method import family_key
from hashbench.results import CodesLoader, load_codes, slug

#: Database items drawn (seeded) for t-SNE and for the pair-distance histograms.
TSNE_POINTS = 1000
PAIR_SAMPLE = 500
SEED = 0


#: One marker per family, so a method's (colour, marker) pair is unique across the report.
FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: Colours within a family; a larger family cycles with hollow markers, then with each further line style.
PALETTE_SIZE = 10
LINE_STYLES = ("-", "--", ":", "-.")
CONTEXT_GREY = (0.78, 0.78, 0.78)


@dataclass(frozen=True)
class Style:
    """How one method is drawn in every figure of a report."""

    colour: tuple[float, float, float]
    marker: str
    family: str
    filled: bool = True
    linestyle: str = "-"


def method_styles(families: dict[str, str]) -> dict[str, Style]:
    """Method -> :class:`Style`, from method -> family. Colours are assigned within each
    family from seaborn's colour-blind palette, so the methods of one panel never share a
    colour; the marker is the family's, so no two methods of a report look alike. A family
    larger than the palette goes round it again with hollow markers, then with each further
    line style (80 methods a family before two look alike)."""
    palette = sns.color_palette("colorblind", n_colors=PALETTE_SIZE)
    styles: dict[str, Style] = {}
    by_family: dict[str, list[str]] = {}
    for method, family in families.items():
        by_family.setdefault(family, []).append(method)
    for family, methods in by_family.items():
        marker = FAMILY_MARKERS[family_key(family)[0] % len(FAMILY_MARKERS)]
        for i, method in enumerate(sorted(methods)):
            lap = i // PALETTE_SIZE
            styles[method] = Style(palette[i % PALETTE_SIZE], marker, family, filled=lap % 2 == 0,
                                   linestyle=LINE_STYLES[lap // 2 % len(LINE_STYLES)])
    return styles


def _line_style(style: Style) -> dict[str, object]:
    return {"color": style.colour, "marker": style.marker, "markersize": 3, "linestyle": style.linestyle,
            "markerfacecolor": style.colour if style.filled else "white"}


def family_panels(styles: dict[str, Style], methods: Iterable[str], title: str, *, share: bool = True
                  ) -> tuple[plt.Figure, dict[str, plt.Axes]]:
    """One panel per family among ``methods``, in :data:`hashbench.method.FAMILIES` order, at most three a row."""
    families = sorted({styles[m].family for m in methods}, key=family_key)
    columns = min(3, len(families))
    rows = -(-len(families) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.9 * columns, 3.3 * rows + 0.5), sharex=share, sharey=share,
                             squeeze=False)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
        if share:  # a shared x axis labels the bottom row only: the panel above an empty cell labels its own
            axes[ax.get_subplotspec().rowspan.start - 1, ax.get_subplotspec().colspan.start].xaxis.set_tick_params(
                labelbottom=True)
    fig.suptitle(title)
    return fig, dict(zip(families, axes.flat, strict=False))


def draw_by_family(series: dict[str, tuple[np.ndarray, np.ndarray]], styles: dict[str, Style], title: str,
                   *, xlabel: str, ylabel: str, chance: float | None = None, **axis: object) -> plt.Figure:
    """Curves (method -> (x, y)) on one panel per family: the family's methods in their
    colours over every other method's curve in grey, so each panel is readable at 20+
    methods and still shows where its family stands among all; ``chance``: the precision of a
    random ranking, drawn as a dotted line on every panel."""
    fig, panels = family_panels(styles, series, title)
    for family, ax in panels.items():
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=1, zorder=0,
                       label=f"random ranking ({chance:.2f})")
        for method, (x, y) in sorted(series.items()):
            if styles[method].family != family:
                ax.plot(x, y, color=CONTEXT_GREY, linewidth=0.8, zorder=1)
        for method, (x, y) in sorted(series.items()):
            if styles[method].family == family:
                ax.plot(x, y, label=method, zorder=2, **_line_style(styles[method]))
        ax.set(title=family, xlabel=xlabel, ylabel=ylabel, **axis)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
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


def chance_precision(curves: dict[str, list[RetrievalResult]]) -> float:
    """The precision of a random ranking at any depth: the share of database items relevant to a
    query, averaged over the queries (every run of a figure has the same ones). It is the
    precision within the largest Hamming radius, where every item is retrieved: high on
    multi-label data (0.35, say), where a curve means little without it."""
    return float(next(iter(curves.values()))[0].radius_precision[-1])


def pr_figure(curves: dict[str, list[RetrievalResult]], styles: dict[str, Style], title: str) -> plt.Figure:
    series = {method: (np.mean([r.radius_recall for r in results], axis=0),
                       np.mean([r.radius_precision for r in results], axis=0))
              for method, results in curves.items()}
    return draw_by_family(series, styles, title, xlabel="Recall", ylabel="Precision", xlim=(0, 1.02),
                          ylim=(0, 1.02), chance=chance_precision(curves))


def precision_at_n_figure(curves: dict[str, list[RetrievalResult]], styles: dict[str, Style], title: str
                          ) -> plt.Figure:
    series = {method: (results[0].cutoffs, np.mean([r.precision_at for r in results], axis=0))
              for method, results in curves.items()}
    return draw_by_family(series, styles, title, xlabel="Number of top retrieved items N", ylabel="Precision@N",
                          ylim=(0, 1.02), chance=chance_precision(curves))


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


def code_distribution_figure(codes_by_method: dict[str, Codes], styles: dict[str, Style], title: str, *,
                             multi_label: bool) -> plt.Figure:
    """In the spirit of the MLH paper's Fig. 5: distance histograms of relevant vs irrelevant
    pairs, named as the data defines them (same class, or shares a label)."""
    order = sorted(codes_by_method, key=lambda m: (family_key(styles[m].family), m))
    columns = min(5, len(order))
    rows = -(-len(order) // columns)
    relevant_name, irrelevant_name = pair_names(multi_label)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.4 * rows + 0.4), sharey=True, squeeze=False)
    for ax, method in zip(axes.flat, order, strict=False):
        relevant, irrelevant, bits = pair_distances(codes_by_method[method])
        bins = np.arange(bits + 2) - 0.5
        ax.hist(relevant, bins=bins, density=True, alpha=0.75, color=styles[method].colour,
                label=relevant_name)
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


def loss_scale(losses: np.ndarray) -> str:
    """``log`` when the losses are positive and span two powers of ten (a log axis then labels
    at least two ticks), else ``linear``: a log axis over less shows one label or none, and
    cannot show a loss <= 0 at all."""
    low, high = float(np.min(losses)), float(np.max(losses))
    if low <= 0 or not np.isfinite(high):
        return "linear"
    return "log" if np.floor(np.log10(high)) - np.ceil(np.log10(low)) >= 1 else "linear"


def training_curves_figure(records: list[dict], styles: dict[str, Style], title: str) -> plt.Figure | None:
    """Per-epoch training loss (first seed of each method; closed-form fits have none)."""
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for record in sorted(records, key=lambda r: (r["method"], r["seed"])):
        history = [h for h in record.get("history") or [] if "loss" in h]
        if history and record["method"] not in series:
            series[record["method"]] = (np.array([h["epoch"] for h in history]),
                                        np.array([h["loss"] for h in history]))
    if not series:
        return None
    # losses of different methods are on different scales: each panel its own axes
    fig, panels = family_panels(styles, series, title, share=False)
    for family, ax in panels.items():
        shown = {method: xy for method, xy in sorted(series.items()) if styles[method].family == family}
        for method, (x, y) in shown.items():
            ax.plot(x, y, label=method, **_line_style(styles[method]))
        ax.set(title=family, xlabel="Epoch", ylabel="Training loss",
               yscale=loss_scale(np.concatenate([y for _, y in shown.values()])))
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def class_names_of(records: pd.DataFrame, raw: dict[str, dict]) -> list[str] | None:
    """The first ``protocol.class_names`` among these records (older records have none)."""
    return next((names for path in records["path"] if (names := (raw[path].get("protocol") or {}).get("class_names"))),
                None)


def write_figures(records: pd.DataFrame, raw: dict[str, dict], out: Path, *, multi_label: dict[str, bool],
                  tsne_bits: int | None = None, tsne_methods: list[str] | None = None,
                  codes_of: CodesLoader = load_codes) -> list[Path]:
    """Every figure for the finished runs in ``records`` (``raw`` maps run path -> record;
    ``multi_label`` maps each dataset to whether its items may carry several labels, which
    decides how pairs are named and how t-SNE points are coloured; t-SNE plots for
    ``tsne_methods`` only, None for every method; a run whose codes ``codes_of`` skips is
    left out).

    Curves are keyed by method, so ``records`` should hold one variant grid: the report passes
    the untagged runs only.
    """
    _style()
    folder = out / "figures"
    done = records[records["status"] == "done"]
    styles = method_styles(dict(zip(records["method"], records["family"], strict=True)))
    written: list[Path] = []
    tsne_at = {dataset: tsne_bits if tsne_bits in set(runs["bits"]) else int(runs["bits"].max())
               for dataset, runs in done.groupby("dataset")}
    for (dataset, bits), runs in done.groupby(["dataset", "bits"], sort=True):
        loaded = {path: codes_of(Path(path)) for path in runs["path"]}  # each file read once
        runs = runs[[loaded[path] is not None for path in runs["path"]]]
        if runs.empty:
            continue
        curves = curves_by_method(runs, loaded)
        where = f"{dataset}, {bits} bits"
        written += save_figure(pr_figure(curves, styles, f"PR by Hamming radius ({where})"), folder,
                               f"pr_{dataset}_{bits}")
        written += save_figure(precision_at_n_figure(curves, styles, f"Precision@N ({where})"), folder,
                               f"precision_at_n_{dataset}_{bits}")
        first = {row.method: loaded[row.path]
                 for row in runs.sort_values("seed").drop_duplicates("method").itertuples()}
        written += save_figure(code_distribution_figure(first, styles, f"Code distances ({where})",
                                                        multi_label=multi_label[dataset]),
                               folder, f"code_distribution_{dataset}_{bits}")
        curves_fig = training_curves_figure([raw[p] for p in runs["path"]], styles, f"Training loss ({where})")
        if curves_fig is not None:
            written += save_figure(curves_fig, folder, f"training_{dataset}_{bits}")
        if bits == tsne_at[dataset]:
            class_names = class_names_of(runs, raw)
            for method, codes in sorted(first.items()):
                if tsne_methods is not None and method not in tsne_methods:
                    continue
                fig = tsne_figure(codes, f"t-SNE: {method}, {dataset}, {bits} bits", multi_label=multi_label[dataset],
                                  class_names=class_names)
                written += save_figure(fig, folder, f"tsne_{dataset}_{method}_{bits}")
    return written
