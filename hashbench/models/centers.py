"""Hash centers and codebooks: fixed +/-1 target codes, one per class.

Shared by the center- and proxy-based methods (CSQ, OrthoHash, MLH's center branch), so
each of them states which construction it uses rather than re-deriving one.
"""

from __future__ import annotations

from math import comb

import numpy as np
import torch
from scipy.linalg import hadamard


def hamming_distances(codes: torch.Tensor) -> torch.Tensor:
    """All pairwise Hamming distances between rows of a +/-1 matrix."""
    bits = codes.shape[1]
    return ((bits - codes.float() @ codes.float().T) / 2).round().long()


def min_pairwise_distance(codes: torch.Tensor) -> int:
    dist = hamming_distances(codes)
    dist.fill_diagonal_(codes.shape[1] + 1)
    return int(dist.min())


def gilbert_varshamov_distance(num_classes: int, bits: int) -> int:
    """The largest d for which the Gilbert-Varshamov bound guarantees ``num_classes`` codewords
    of length ``bits`` at minimum distance d: ``num_classes * V(bits, d - 1) <= 2**bits``,
    where ``V(q, r) = sum_{i<=r} C(q, i)`` is the volume of a Hamming ball of radius r."""
    radius = 0
    volume = 1
    while radius < bits and num_classes * (volume + comb(bits, radius + 1)) <= 2**bits:
        radius += 1
        volume += comb(bits, radius)
    return radius + 1


def hadamard_centers(num_classes: int, bits: int) -> torch.Tensor:
    """Rows of the Hadamard matrix H_bits followed by their negations (CSQ): pairwise
    distances are bits/2 (or bits between a row and its negation). Needs a power-of-2
    ``bits`` and ``num_classes <= 2 * bits``."""
    if bits & (bits - 1) or num_classes > 2 * bits:
        raise ValueError(f"Hadamard centers need power-of-2 bits and num_classes <= 2*bits; got {num_classes}, {bits}")
    rows = hadamard(bits)
    return torch.from_numpy(np.concatenate([rows, -rows])[:num_classes]).float()


def random_centers(
    num_classes: int, bits: int, min_distance: int, *, seed: int = 0, balanced: bool = True, max_tries: int = 200_000
) -> torch.Tensor:
    """Greedy rejection sampling: draw random +/-1 codes (half of the bits -1 when
    ``balanced``, as in CSQ's reference code) and keep one only if it is at least
    ``min_distance`` from every code kept so far."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    for _ in range(max_tries):
        if balanced:
            code = np.ones(bits)
            code[rng.choice(bits, bits // 2, replace=False)] = -1
        else:
            code = rng.choice([-1.0, 1.0], size=bits)
        if all((code != other).sum() >= min_distance for other in kept):
            kept.append(code)
            if len(kept) == num_classes:
                return torch.from_numpy(np.stack(kept)).float()
    raise ValueError(f"no {num_classes} codes of {bits} bits at distance >= {min_distance} in {max_tries} draws")


def multi_label_centers(centers: torch.Tensor, labels: torch.Tensor, *, seed_codes: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """CSQ's center for a multi-hot label row: the sign of the mean of its classes' centers;
    a tie (zero) takes the bit of ``seed_codes`` (a fixed random +/-1 row per sample), or +1."""
    mean = labels @ centers / labels.sum(1, keepdim=True).clamp_min(1)
    tie_break = seed_codes if seed_codes is not None else torch.ones_like(mean)
    return torch.where(mean == 0, tie_break, torch.sign(mean))


def greedy_codebook(num_classes: int, bits: int, *, seed: int = 0, start: float = 0.61, floor: float = 0.2,
                    step: float = 0.01, tries: int = 10_000) -> torch.Tensor:
    """OrthoHash's "optimised" codebook: random sign codes accepted only if their normalised
    Hamming distance to every accepted code is at least a threshold that starts at
    ``start`` and drops by ``step`` after ``tries`` rejections (never below ``floor``)."""
    rng = np.random.default_rng(seed)
    threshold = start
    while threshold >= floor:
        kept: list[np.ndarray] = []
        rejected = 0
        while len(kept) < num_classes and rejected < tries:
            code = rng.choice([-1.0, 1.0], size=bits)
            if all((code != other).mean() >= threshold for other in kept):
                kept.append(code)
            else:
                rejected += 1
        if len(kept) == num_classes:
            return torch.from_numpy(np.stack(kept)[rng.permutation(num_classes)]).float()
        threshold -= step
    raise ValueError(f"no codebook of {num_classes} x {bits} bits at normalised distance >= {floor}")
