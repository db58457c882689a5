"""Hash centers and codebooks: fixed +/-1 target codes, one per class.

Shared by the center- and proxy-based methods (CSQ, OrthoHash, MLH's center branch), so
each of them states which construction it uses rather than re-deriving one.
"""

from __future__ import annotations

import time
from math import comb

import numpy as np
import torch
from scipy.linalg import hadamard

from hashbench.validation import HashbenchError

#: How long :func:`random_centers` searches before giving up.
SEARCH_TIME_LIMIT_S = 10.0


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


def hamming_bound(bits: int, min_distance: int) -> int:
    """Upper bound on the size of any binary code of length ``bits`` at minimum distance
    ``min_distance`` >= 1: the smaller of the sphere-packing (Hamming) bound
    ``2**q / V(q, floor((d - 1) / 2))`` - applied to the punctured code, ``A(q, d) = A(q - 1, d - 1)``,
    when d is even - and the Plotkin bound where it applies (``2d > q``, or ``q = 2d``; odd d
    through ``A(q, d) = A(q + 1, d + 1)``). MacWilliams & Sloane, ch. 1 and 2."""
    if min_distance > bits:
        return 1
    length, distance = (bits - 1, min_distance - 1) if min_distance % 2 == 0 else (bits, min_distance)
    radius = (distance - 1) // 2
    bound = 2**length // sum(comb(length, i) for i in range(radius + 1))
    even_length, even_distance = (bits, min_distance) if min_distance % 2 == 0 else (bits + 1, min_distance + 1)
    if 2 * even_distance > even_length:
        bound = min(bound, 2 * (even_distance // (2 * even_distance - even_length)))
    elif 2 * even_distance == even_length:
        bound = min(bound, 2 * even_length)
    return bound


def balanced_code_bound(bits: int, min_distance: int) -> int:
    """Upper bound on the size of a code whose words all have ``bits // 2`` bits at -1 (a
    constant-weight code, as balanced random centers are) at minimum distance ``min_distance``
    >= 1: Johnson's bounds, ``A(n, 2e, w) <= floor(n / w * A(n - 1, 2e, w - 1))`` applied down to
    ``A = 1`` for ``w < e``, each step also capped by ``floor(e n / (w^2 - w n + e n))`` when
    that denominator is positive (MacWilliams & Sloane, ch. 17, theorems 2 and 3). Distances
    between such words are even, so d counts as ``2e = 2 * ceil(d / 2)``; for e = 1 this is
    ``C(bits, bits // 2)``, the number of balanced words."""
    half_distance = -(-min_distance // 2)
    weight = bits // 2  # A(n, 2e, w) = A(n, 2e, n - w): the lighter side
    steps = max(0, weight - half_distance + 1)
    bound = 1
    for step in reversed(range(steps)):
        length, word_weight = bits - step, weight - step
        bound = length * bound // word_weight
        denominator = word_weight**2 - word_weight * length + half_distance * length
        if denominator > 0:
            bound = min(bound, half_distance * length // denominator)
    return min(bound, hamming_bound(bits, 2 * half_distance))


def check_center_feasibility(num_classes: int, bits: int, min_distance: int, *, balanced: bool = True) -> None:
    """Refuse up front a center set no search can find: ``num_classes`` codes of ``bits`` bits
    at pairwise Hamming distance >= ``min_distance`` beyond a proven upper bound on the size
    of such a code (:func:`hamming_bound`; with ``balanced``, the default as in
    :func:`random_centers`, :func:`balanced_code_bound`). Passing is necessary, not sufficient:
    the random search itself may still give up."""
    if min_distance < 1 or num_classes <= 1:
        return
    if balanced:
        bound, name = balanced_code_bound(bits, min_distance), "Johnson bound for balanced codes"
    else:
        bound, name = hamming_bound(bits, min_distance), "Hamming/Plotkin bound"
    if num_classes > bound:
        raise HashbenchError(
            f"number of classes must be at most {bound} for {bits}-bit hash centers at pairwise distance "
            f">= {min_distance} ({name}); got {num_classes}")


def random_centers(
    num_classes: int, bits: int, min_distance: int, *, seed: int = 0, balanced: bool = True, max_tries: int = 200_000
) -> torch.Tensor:
    """Greedy rejection sampling: draw random +/-1 codes (half of the bits -1 when
    ``balanced``, as in CSQ's reference code) and keep one only if it is at least
    ``min_distance`` from every code kept so far. Impossible requests fail at once
    (:func:`check_center_feasibility`); a search that finds no set in ``max_tries`` draws or
    ``SEARCH_TIME_LIMIT_S`` seconds gives up."""
    check_center_feasibility(num_classes, bits, min_distance, balanced=balanced)
    rng = np.random.default_rng(seed)
    kept = np.empty((num_classes, bits))
    num_kept = 0
    max_dot = bits - 2 * min_distance  # Hamming distance (bits - a.b) / 2 >= min_distance
    deadline = time.monotonic() + SEARCH_TIME_LIMIT_S
    draw = 0
    for draw in range(1, max_tries + 1):
        if balanced:
            code = np.ones(bits)
            code[rng.choice(bits, bits // 2, replace=False)] = -1
        else:
            code = rng.choice([-1.0, 1.0], size=bits)
        if (kept[:num_kept] @ code <= max_dot).all():
            kept[num_kept] = code
            num_kept += 1
            if num_kept == num_classes:
                return torch.from_numpy(kept).float()
        if draw % 1000 == 0 and time.monotonic() > deadline:
            break
    raise HashbenchError(
        f"no {num_classes} hash centers of {bits} bits at pairwise distance >= {min_distance} found in {draw} random "
        f"draws (best: {num_kept}); use fewer classes, more bits or a smaller distance")


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
    kept = np.empty((num_classes, bits))
    while threshold >= floor:
        count = rejected = 0
        while count < num_classes and rejected < tries:
            # the draws of rng.choice([-1.0, 1.0], size=bits), at a third of its cost
            code = 2.0 * rng.integers(0, 2, size=bits) - 1.0
            if ((kept[:count] != code).mean(1) >= threshold).all():
                kept[count] = code
                count += 1
            else:
                rejected += 1
        if count == num_classes:
            return torch.from_numpy(kept[rng.permutation(num_classes)]).float()
        threshold -= step
    raise ValueError(f"no codebook of {num_classes} x {bits} bits at normalised distance >= {floor}")


#: The codebooks :func:`orthohash_codebook` draws.
CODEBOOKS = ("bernoulli", "gaussian", "greedy")


def orthohash_codebook(kind: str, num_classes: int, bits: int, seed: int) -> torch.Tensor:
    """OrthoHash's (and DPN's) class codebook: Bernoulli(1/2) or Gaussian signs, or the greedy
    far-apart codes of :func:`greedy_codebook`, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "bernoulli":
        return torch.bernoulli(torch.full((num_classes, bits), 0.5), generator=generator) * 2 - 1
    if kind == "gaussian":
        return torch.randn(num_classes, bits, generator=generator).sign()
    if kind == "greedy":
        return greedy_codebook(num_classes, bits, seed=seed)
    raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)}; got {kind!r}")
