"""Splits: which images are queries, which train the model, which form the database.

Every split is a pure function of the labels and a seed, and carries a digest of its
index arrays so a record says exactly which split produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Index arrays into a dataset's images (int64, sorted within each role)."""

    train: np.ndarray
    query: np.ndarray
    database: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "query": len(self.query), "database": len(self.database)}

    def digest(self) -> str:
        sha = hashlib.sha256()
        for role in (self.train, self.query, self.database):
            sha.update(np.ascontiguousarray(role, dtype=np.int64).tobytes())
            sha.update(b"|")
        return sha.hexdigest()[:16]


def sample_per_class(class_ids: np.ndarray, counts: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Draw ``counts[role]`` items of every class without replacement, in the order given,
    from a seeded permutation of each class; what is left is returned under ``"rest"``."""
    rng = np.random.default_rng(seed)
    picked: dict[str, list[np.ndarray]] = {role: [] for role in [*counts, "rest"]}
    for cls in np.unique(class_ids):
        members = rng.permutation(np.flatnonzero(class_ids == cls))
        need = sum(counts.values())
        if len(members) < need:
            raise ValueError(f"class {cls} has {len(members)} items; the protocol needs {need}")
        start = 0
        for role, count in counts.items():
            picked[role].append(members[start : start + count])
            start += count
        picked["rest"].append(members[start:])
    return {role: np.sort(np.concatenate(parts)).astype(np.int64) for role, parts in picked.items()}
