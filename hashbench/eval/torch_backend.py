"""The same metrics with torch, for codes that live on a GPU.

Distances come from one matrix product of +/-1 codes per chunk of queries (exact in
float16 with float32 accumulation up to 2048 bits), relevance from a product of the
multi-hot labels; the stable "index" order is a top-k on the key ``distance * N + index``,
and the histograms that ``ties="expected"`` needs are scatter-adds; the caller then runs
the expected-AP closed form on the CPU over the (queries x bits+1) histograms only.
"""

from __future__ import annotations

import numpy as np
import torch

#: int64 sort keys per chunk: bounds GPU memory at about 1 GiB whatever the database size.
KEYS_PER_CHUNK = 1 << 27


def rank_torch(q_bits: torch.Tensor, d_bits: torch.Tensor, q_labels: torch.Tensor, d_labels: torch.Tensor,
               topks: np.ndarray, cutoffs: np.ndarray, expected: bool
               ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
    """(ap, hist_total, hist_rel, rel_at) as numpy arrays, like the numba kernel's; with
    ``expected`` only the histograms (the caller finishes from them)."""
    device = q_bits.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    bits = q_bits.shape[1]
    n_db = d_bits.shape[0]
    d_signs = d_bits.to(dtype) * 2 - 1
    d_hot = d_labels.to(dtype)
    max_rank = int(max(topks.max(), cutoffs.max() if len(cutoffs) else 0))
    ks = torch.as_tensor(topks, device=device)
    cuts = torch.as_tensor(cutoffs, device=device)
    arange = torch.arange(n_db, device=device)
    ranks = torch.arange(1, max_rank + 1, device=device, dtype=torch.float64)
    chunk = max(1, KEYS_PER_CHUNK // n_db)
    out = {"ap": [], "ht": [], "hr": [], "rel_at": []}
    for start in range(0, q_bits.shape[0], chunk):
        q_signs = q_bits[start : start + chunk].to(dtype) * 2 - 1
        dist = ((bits - (q_signs @ d_signs.T).float()) / 2).round().long()
        rel = (q_labels[start : start + chunk].to(dtype) @ d_hot.T) > 0
        hist_total = torch.zeros(len(dist), bits + 1, dtype=torch.long, device=device)
        hist_total.scatter_add_(1, dist, torch.ones_like(dist))
        hist_rel = torch.zeros_like(hist_total).scatter_add_(1, dist, rel.long())
        out["ht"].append(hist_total.cpu())
        out["hr"].append(hist_rel.cpu())
        if expected:
            continue
        top = (dist * n_db + arange).topk(max_rank, dim=1, largest=False, sorted=True).indices
        hits = rel.gather(1, top).double()
        cumulative = hits.cumsum(1)
        precision_terms = hits * cumulative / ranks
        ap = []
        for k in ks.tolist():
            found = hits[:, :k].sum(1)
            ap.append(torch.where(found > 0, precision_terms[:, :k].sum(1) / found.clamp_min(1), 0.0))
        out["ap"].append(torch.stack(ap, 1).cpu())
        out["rel_at"].append(cumulative[:, cuts - 1].cpu())
    hist_total = torch.cat(out["ht"]).numpy()
    hist_rel = torch.cat(out["hr"]).numpy()
    if expected:
        return None, hist_total, hist_rel, None
    return torch.cat(out["ap"]).numpy(), hist_total, hist_rel, torch.cat(out["rel_at"]).numpy()
