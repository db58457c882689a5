"""Hamming-ranking retrieval metrics, exact and without a sort per query.

For each query one pass over the bit-packed database computes every Hamming distance
(XOR + popcount), whether the item is relevant (it shares a label: a non-zero AND of
packed label words), and two histograms over the distance: items and relevant items.
Everything else follows from those:

* precision and recall within Hamming radius r, for every r, are cumulative sums;
* ``ties="expected"``: the exact expectation of AP@K over uniformly random orders within
  tied distances (McSherry & Najork, ECIR 2008), from the per-distance counts alone;
* ``ties="index"`` (the stable order: ties go by database index, as a stable argsort
  would): a second pass over the items no farther than the K-th computes the rank of each
  relevant item by counting placement, i.e. a stable counting sort restricted to the top K;
* ``ties="random"``: the database is shuffled with a seed, then ranked as ``"index"``.

AP@K is the mean, over the relevant items within the top K, of the precision at their
rank; a query with none scores 0 and stays in the mean. ``topk=None`` means the whole
database. Chunks of queries run on parallel threads (:mod:`hashbench.eval.threads`); memory is
a few bytes per database item per thread plus the packed inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numba import njit

from hashbench.eval.codes import binarize, label_rows, pack_rows
from hashbench.eval.threads import over_rows
from hashbench.eval.torch_backend import rank_torch
from hashbench.validation import check_choice

TIES = ("index", "expected", "random")
BACKENDS = ("auto", "numba", "torch")


# The helpers are inlined into the cached kernels below: a fresh environment then compiles
# each kernel once instead of every helper separately (about 5 s instead of 8 s on one core).
@njit(inline="always")
def _popcount64(x):
    # SWAR popcount: plain integer arithmetic, which LLVM vectorises down a column.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(inline="always")
def hamming_distances(q_code, db_code_columns, dist):
    """``dist[j]``: the Hamming distance of packed query ``q_code`` to database item ``j``
    (uint16; the database word-major, one contiguous column per 64-bit word, so the
    XOR-popcount loop runs down columns and vectorises)."""
    dist[:] = 0
    for w in range(db_code_columns.shape[0]):
        word = q_code[w]
        column = db_code_columns[w]
        for j in range(dist.shape[0]):
            dist[j] += np.uint16(_popcount64(word ^ column[j]))


@njit(inline="always")
def _distances(q_code, q_label, db_code_columns, db_label_columns, dist, rel, hist_total, hist_rel):
    """Fill the per-item distance and relevance of one query and both histograms.

    The database is stored word-major (one contiguous column per 64-bit word), so the
    XOR-popcount and label-AND loops run down contiguous columns and vectorise; the
    histograms then take one increment per item, of a (distance, relevant) pair counter.
    """
    n_db = dist.shape[0]
    n_bins = hist_total.shape[0]
    hamming_distances(q_code, db_code_columns, dist)
    rel[:] = 0
    for w in range(db_label_columns.shape[0]):
        word = q_label[w]
        column = db_label_columns[w]
        for j in range(n_db):
            rel[j] |= np.uint8((word & column[j]) != 0)
    pairs = np.zeros(2 * n_bins, dtype=np.int64)
    for j in range(n_db):
        pairs[2 * dist[j] + rel[j]] += 1
    for d in range(n_bins):
        hist_total[d] = pairs[2 * d] + pairs[2 * d + 1]
        hist_rel[d] = pairs[2 * d + 1]


@njit(inline="always")
def _harmonic_sums(n_before, m):
    """h1 = sum_{p<=m} 1 / (n_before + p) and h2 = sum_{p<=m} (p - 1) / (n_before + p)."""
    h1 = 0.0
    h2 = 0.0
    for p in range(1, m + 1):
        inv = 1.0 / (n_before + p)
        h1 += inv
        h2 += (p - 1) * inv
    return h1, h2


@njit(inline="always")
def _bucket_precision_sum(r_before, r, m, h1, h2):
    """Expected sum of precisions over the relevant items among the first ``m`` slots of a
    tied bucket when those slots hold ``r`` relevant items in uniformly random order, after
    ``r_before`` relevant items ranked earlier; ``h1``, ``h2`` from :func:`_harmonic_sums`.
    A slot p is relevant with probability r/m and then has (p-1)(r-1)/(m-1) relevant
    items before it in expectation."""
    if r == 0 or m == 0:
        return 0.0
    others = (r - 1) / (m - 1) if m > 1 else 0.0
    return (r / m) * ((r_before + 1) * h1 + others * h2)


@njit(inline="always")
def _log_comb(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@njit(inline="always")
def _expected_ap(hist_total, hist_rel, k):
    """Exact E[AP@k] over random orders within tied distances (see module docstring)."""
    n_before = 0
    r_before = 0
    s_full = 0.0
    n_bins = hist_total.shape[0]
    for d in range(n_bins):
        n = hist_total[d]
        r = hist_rel[d]
        if n_before + n <= k:  # the bucket lies wholly inside the top k
            h1, h2 = _harmonic_sums(n_before, n)
            s_full += _bucket_precision_sum(r_before, r, n, h1, h2)
            n_before += n
            r_before += r
            if n_before == k:
                break
            continue
        # the boundary bucket: m of its n items fall inside the top k, x of them relevant,
        # x hypergeometric; AP = (S_full + S_partial(x)) / (R_full + x)
        m = k - n_before
        h1, h2 = _harmonic_sums(n_before, m)
        total = 0.0
        log_norm = _log_comb(n, m)
        for x in range(max(0, m - (n - r)), min(r, m) + 1):
            if r_before + x == 0:
                continue
            prob = math.exp(_log_comb(r, x) + _log_comb(n - r, m - x) - log_norm)
            partial = _bucket_precision_sum(r_before, x, m, h1, h2)
            total += prob * (s_full + partial) / (r_before + x)
        return total
    return s_full / r_before if r_before > 0 else 0.0


@njit(inline="always")
def _expected_query(ht, hr, topks, cutoffs, ap_row, rel_row):
    """Expected AP at each k and expected relevant counts at each cutoff, from one query's
    histograms (a cutoff inside a bucket takes its share of the bucket's relevant items)."""
    for i in range(topks.shape[0]):
        ap_row[i] = _expected_ap(ht, hr, topks[i])
    n_bins = ht.shape[0]
    for c in range(cutoffs.shape[0]):
        n_cut = cutoffs[c]
        seen_total = 0
        seen_rel = 0
        rel_row[c] = 0.0
        for d in range(n_bins):
            if seen_total + ht[d] >= n_cut:
                rel_row[c] = seen_rel + (n_cut - seen_total) * hr[d] / max(ht[d], 1)
                break
            seen_total += ht[d]
            seen_rel += hr[d]
        else:
            rel_row[c] = seen_rel


@njit(cache=True, nogil=True)
def _expected_rows(start, stop, hist_total, hist_rel, topks, cutoffs, ap, rel_at):
    """The ``ties="expected"`` metrics of queries ``start:stop`` from their histograms."""
    for q in range(start, stop):
        _expected_query(hist_total[q], hist_rel[q], topks, cutoffs, ap[q], rel_at[q])


def expected_from_histograms(hist_total: np.ndarray, hist_rel: np.ndarray, topks: np.ndarray,
                             cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``ties="expected"`` metrics (AP per k, relevant count per cutoff) of many queries
    from their distance histograms."""
    n_query = hist_total.shape[0]
    ap = np.zeros((n_query, topks.shape[0]))
    rel_at = np.zeros((n_query, cutoffs.shape[0]))
    over_rows(_expected_rows, n_query, hist_total, hist_rel, topks, cutoffs, ap, rel_at)
    return ap, rel_at


@njit(cache=True, nogil=True)
def _rank_rows(start, stop, q_codes, q_labels, db_code_columns, db_label_columns, topks, cutoffs, expected,
               ap, hist_total, hist_rel, rel_at):
    """For queries ``start:stop``: AP at every k in ``topks``, both histograms, and relevant
    counts at ``cutoffs`` (database codes and labels word-major: (words, N))."""
    n_db = db_code_columns.shape[1]
    n_bins = hist_total.shape[1]
    n_k = topks.shape[0]
    max_rank = max(topks.max(), cutoffs.max() if cutoffs.shape[0] else 0)
    dist = np.empty(n_db, dtype=np.uint16)  # distances reach 1024 bits
    rel = np.empty(n_db, dtype=np.uint8)
    near = np.empty(n_db + 1, dtype=np.int64)
    for q in range(start, stop):
        ht = hist_total[q]
        hr = hist_rel[q]
        _distances(q_codes[q], q_labels[q], db_code_columns, db_label_columns, dist, rel, ht, hr)
        if expected:
            _expected_query(ht, hr, topks, cutoffs, ap[q], rel_at[q])
            continue
        start_total = np.zeros(n_bins, dtype=np.int64)  # items, and relevant items, nearer than d
        start_rel = np.zeros(n_bins, dtype=np.int64)
        for d in range(1, n_bins):
            start_total[d] = start_total[d - 1] + ht[d - 1]
            start_rel[d] = start_rel[d - 1] + hr[d - 1]
        # stable counting placement of the first max_rank items
        last = n_bins - 1
        for d in range(n_bins):
            if start_total[d] + ht[d] >= max_rank:
                last = d
                break
        seen_total = np.zeros(n_bins, dtype=np.int64)
        seen_rel = np.zeros(n_bins, dtype=np.int64)
        precision_sum = np.zeros(n_k)
        rel_in_k = np.zeros(n_k, dtype=np.int64)
        rel_hits = np.zeros(cutoffs.shape[0], dtype=np.int64)
        # branchless compaction of the few items no farther than the last bucket, in index order
        n_near = 0
        for j in range(n_db):
            near[n_near] = j
            n_near += dist[j] <= last
        for t in range(n_near):
            j = near[t]
            d = dist[j]
            rank = start_total[d] + seen_total[d] + 1
            seen_total[d] += 1
            if rank > max_rank or rel[j] == 0:
                continue
            seen_rel[d] += 1
            hits = start_rel[d] + seen_rel[d]
            for i in range(n_k):
                if rank <= topks[i]:
                    precision_sum[i] += hits / rank
                    rel_in_k[i] += 1
            for c in range(cutoffs.shape[0]):
                if rank <= cutoffs[c]:
                    rel_hits[c] += 1
        for i in range(n_k):
            ap[q, i] = precision_sum[i] / rel_in_k[i] if rel_in_k[i] > 0 else 0.0
        for c in range(cutoffs.shape[0]):
            rel_at[q, c] = rel_hits[c]


def _rank_numba(q_bits: np.ndarray, d_bits: np.ndarray, q_labels: np.ndarray, d_labels: np.ndarray,
                topks: np.ndarray, cutoffs: np.ndarray, expected: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ap, hist_total, hist_rel, rel_at), the numba kernel over packed codes and labels."""
    n_query, n_bins = len(q_bits), q_bits.shape[1] + 1
    ap = np.zeros((n_query, topks.shape[0]))
    hist_total = np.zeros((n_query, n_bins), dtype=np.int64)
    hist_rel = np.zeros((n_query, n_bins), dtype=np.int64)
    rel_at = np.zeros((n_query, cutoffs.shape[0]))
    # the database word-major: one contiguous column per 64-bit word
    over_rows(_rank_rows, n_query, pack_rows(q_bits), pack_rows(q_labels), np.ascontiguousarray(pack_rows(d_bits).T),
              np.ascontiguousarray(pack_rows(d_labels).T), topks, cutoffs, expected, ap, hist_total, hist_rel, rel_at)
    return ap, hist_total, hist_rel, rel_at


@dataclass
class RetrievalResult:
    """Every metric of one query set against one database, from one pass."""

    bits: int
    topks: list[int | None]
    maps: dict[int | None, float]  # mAP per requested K (None = all)
    radius_precision: np.ndarray  # mean over queries, r = 0..bits (0 where nothing within r)
    radius_recall: np.ndarray  # mean over queries, r = 0..bits
    cutoffs: np.ndarray  # N values of the precision@N / recall@N curves
    precision_at: np.ndarray
    recall_at: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """Flat ``{name: value}``: ``map@K`` per K, ``precision@r2`` and ``recall@r2``."""
        out = {f"map@{'all' if k is None else k}": v for k, v in self.maps.items()}
        out["precision@r2"] = float(self.radius_precision[min(2, self.bits)])
        out["recall@r2"] = float(self.radius_recall[min(2, self.bits)])
        return out


def default_cutoffs(n_db: int, points: int = 20) -> np.ndarray:
    """N values for precision@N curves: evenly spaced up to min(database size, 10,000)."""
    top = min(n_db, 10_000)
    return np.unique(np.linspace(max(1, top // points), top, points).astype(np.int64))


def evaluate(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    topks: Sequence[int | None] = (None,),
    ties: str = "index",
    seed: int = 0,
    cutoffs: Sequence[int] | None = None,
    backend: str = "auto",
) -> RetrievalResult:
    """All retrieval metrics for one query set (see the module docstring for definitions).

    Codes may be {-1,+1}, {0,1} or real-valued (binarised with >= 0); labels class
    indices or multi-hot rows. An item is relevant when it shares a label with the query.
    ``backend="auto"`` uses torch when the codes are CUDA tensors and the numba kernel
    otherwise; ``"torch"`` and ``"numba"`` force one.
    """
    check_choice("ties", ties, TIES)
    check_choice("backend", backend, BACKENDS)
    device = query_codes.device if isinstance(query_codes, torch.Tensor) else torch.device("cpu")
    use_torch = backend == "torch" or (backend == "auto" and device.type == "cuda")
    q_bits, d_bits = binarize(query_codes), binarize(db_codes)
    bits = q_bits.shape[1]
    if d_bits.shape[1] != bits:
        raise ValueError(f"query and database codes differ in length: {bits} vs {d_bits.shape[1]}")
    q_labels, d_labels = label_rows(query_labels, db_labels)
    if len(q_labels) != len(q_bits) or len(d_labels) != len(d_bits):
        raise ValueError("codes and labels differ in number of rows")
    n_db = len(d_bits)
    if ties == "random":
        order = np.random.default_rng(seed).permutation(n_db)
        d_bits, d_labels = d_bits[order], d_labels[order]
    resolved = np.array([n_db if k is None else min(int(k), n_db) for k in topks], dtype=np.int64)
    if (resolved <= 0).any():
        raise ValueError(f"topk must be positive or None; got {list(topks)}")
    cut = default_cutoffs(n_db) if cutoffs is None else np.minimum(np.asarray(cutoffs, dtype=np.int64), n_db)
    if use_torch:
        ap, hist_total, hist_rel, rel_at = rank_torch(
            *(torch.from_numpy(a).to(device) for a in (q_bits, d_bits, q_labels, d_labels)),
            resolved, cut, ties == "expected",
        )
        if ties == "expected":
            ap, rel_at = expected_from_histograms(hist_total, hist_rel, resolved, cut)
    else:
        ap, hist_total, hist_rel, rel_at = _rank_numba(q_bits, d_bits, q_labels, d_labels, resolved, cut,
                                                       ties == "expected")
    within_total = np.cumsum(hist_total, axis=1)
    within_rel = np.cumsum(hist_rel, axis=1)
    n_relevant = within_rel[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        radius_precision = np.where(within_total > 0, within_rel / within_total, 0.0).mean(0)
        radius_recall = np.where(n_relevant > 0, within_rel / n_relevant, 0.0).mean(0)
        recall_at = np.where(n_relevant > 0, rel_at / n_relevant, 0.0).mean(0)
    keys = list(topks)
    return RetrievalResult(
        bits=bits,
        topks=keys,
        maps={k: float(ap[:, i].mean()) for i, k in enumerate(keys)},
        radius_precision=radius_precision,
        radius_recall=radius_recall,
        cutoffs=cut,
        precision_at=(rel_at / cut).mean(0),
        recall_at=recall_at,
    )


def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    ties: str = "index",
    seed: int = 0,
) -> float:
    """mAP@topk by Hamming ranking (``topk=None``: the whole database)."""
    result = evaluate(query_codes, db_codes, query_labels, db_labels, topks=(topk,), ties=ties, seed=seed,
                      cutoffs=[1])
    return result.maps[topk]


def record_metrics(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, topk: int
                   ) -> tuple[dict[str, Any], RetrievalResult]:
    """The metrics a run's record holds (``map@K``, ties by database index; ``map_expected@K``,
    its expectation over orders within ties; precision and recall within radius 2; ``topk``),
    and the full result they come from. The runner and ``check_records.py --metrics`` both
    call this, so a record's metrics can be recomputed from its saved codes exactly."""
    result = evaluate(query_codes, db_codes, query_labels, db_labels, topks=(topk,), ties="index")
    expected = mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
    return {**result.as_dict(), f"map_expected@{topk}": expected, "topk": topk}, result
