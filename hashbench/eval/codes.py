"""Binary codes and labels in the packed forms the retrieval kernels read."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def binarize(codes: Any) -> np.ndarray:
    """Codes as a bool (N, bits) array: {0,1} codes are taken as bits; {-1,+1} and
    real-valued codes are binarised with ``>= 0 -> 1``."""
    array = to_numpy(codes)
    if array.ndim != 2:
        raise ValueError(f"codes must be a 2-D (N, bits) array; got shape {array.shape}")
    if array.dtype == bool:
        return array
    if np.isin(array, (0, 1)).all():
        return array.astype(bool)
    if not np.isfinite(array).all():
        raise ValueError("codes contain NaN or inf")
    return array >= 0


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack a bool (N, B) array into uint64 words (N, ceil(B / 64)), zero-padded."""
    words = -(-bits.shape[1] // 64)
    padded = np.zeros((bits.shape[0], words * 64), dtype=bool)
    padded[:, : bits.shape[1]] = bits
    return np.ascontiguousarray(np.packbits(padded, axis=1, bitorder="little").view(np.uint64))


def multi_hot(labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Labels as a bool (N, C) multi-hot array: class indices (1-D) or multi-hot rows (2-D)."""
    array = to_numpy(labels)
    if array.ndim == 1:
        num_classes = int(array.max()) + 1 if num_classes is None else num_classes
        out = np.zeros((len(array), num_classes), dtype=bool)
        out[np.arange(len(array)), array.astype(np.int64)] = True
        return out
    if array.ndim == 2:
        return array > 0
    raise ValueError(f"labels must be class indices (N,) or multi-hot rows (N, C); got shape {array.shape}")


def label_rows(query_labels: Any, db_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both label sets as bool multi-hot rows of one width (packed, "shares a label" is a
    non-zero AND of words)."""
    q, d = to_numpy(query_labels), to_numpy(db_labels)
    num_classes = None
    if q.ndim == 1 and d.ndim == 1:
        num_classes = int(max(q.max(), d.max())) + 1
    q_hot, d_hot = multi_hot(q, num_classes), multi_hot(d, num_classes)
    if q_hot.shape[1] != d_hot.shape[1]:
        raise ValueError(f"query and database labels differ in width: {q_hot.shape[1]} vs {d_hot.shape[1]}")
    return q_hot, d_hot
