"""Label-free shallow hashing fitted in closed form: LSH, PCAH, ITQ and Spectral Hashing.

Each method is fitted once on the training split's fixed features (``fit``), keeps what it
learns in buffers sized in ``__init__`` (so checkpoints carry it) and has no trainable
parameter; ``forward`` gives continuous codes whose sign is the code. None of them reads
labels (``supervised = False``). On ``digits`` they fit on the pixels (``backbone=raw``,
the classic "tiny image" input of these papers), since a from-scratch CNN would stay at its
random initialisation: no optimizer runs. Every fit is computed in float64.

* LSH: random-hyperplane hashing (Charikar, STOC 2002), as Gong and Lazebnik's ITQ paper runs
  it as a baseline: h(x) = sign(w^T (x - mean)), w ~ N(0, I), drawn from the run's seed. The
  MATLAB baseline collections (e.g. willard-yuan/hashing-baseline-for-image-retrieval,
  ``LSH/trainLSH.m``) project uncentred data; hashbench centres on the training mean, as the
  issue asks, so each bit is balanced in expectation on any features.
* PCAH: sign of the top-q principal projections of the centred data (the PCA step of the
  ITQ code, ``[pc, l] = eigs(cov(X), bit)``), the "PCA-Direct" baseline of the ITQ paper.
* ITQ: Gong and Lazebnik, CVPR 2011 ("Iterative Quantization: A Procrustes Approach to
  Learning Binary Codes"), the authors' MATLAB ``compressITQ.m`` / ``ITQ.m`` (Yunchao Gong):
  centre ("VERY IMPORTANT for ITQ to work"), PCA to q dimensions, a random orthogonal
  initial rotation (the left singular vectors of a q x q Gaussian matrix), then alternate
  B = sign(VR) (ties at 0 -> +1, ``UX(Z>=0) = 1``) and the orthogonal Procrustes step
  R = U_A U_B^T from the SVD B^T V = U_B S U_A^T. ``iterations`` = 50 rotation updates, the
  default of the code (its loop ``for iter=0:n_iter`` runs 51; one more update of a converged
  rotation changes nothing measurable). The initial rotation comes from the run's seed.
* SH: Weiss, Torralba and Fergus, NeurIPS 2008 ("Spectral Hashing"), the authors' MATLAB
  ``trainSH.m`` / ``compressSH.m``: PCA to min(q, d) directions (the projection is not
  centred: "no need to remove the mean"); a uniform distribution on [min - eps, max + eps]
  along each direction (the code's 5/95 percentiles are computed and then overwritten by the
  extremes, so the extremes it is); along direction j of range R_j, modes k = 1 ..
  ceil((q + 1) R_j / max R) - 1 with eigenvalue proportional to (k pi / R_j)^2; the constant
  mode is skipped and the q (direction, mode) pairs of smallest eigenvalue are kept (stable
  sort, so ties keep the enumeration order: direction, then mode); bit i is the sign of
  sin(pi/2 + k_i pi (x_j - min_j) / R_j). Each chosen mode varies along one direction only,
  so the code's product over all directions is this one factor (the others are sin(pi/2) = 1).

Deviation common to all four: a code length above the feature width cannot be fitted by PCA
(PCAH, ITQ) and is refused in one line at fit time (SH, as its code, keeps min(q, d)
directions and LSH has no limit).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hashbench.blocks import ShallowHash, binary_sign
from hashbench.method import integer, register_method


def principal_directions(features: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and the top-``count`` eigenvectors (D, count) of the features' covariance,
    in decreasing order of variance, in float64."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    return mean, vectors.flip(1)[:, :count]


def itq_rotation(projected: torch.Tensor, rotation: torch.Tensor, iterations: int
                 ) -> tuple[torch.Tensor, list[float]]:
    """ITQ's alternation from ``rotation``: B = sign(VR), then R from the SVD of B^T V.
    Returns the final rotation and ||sign(VR) - VR||^2 before the first and after each update."""
    rotated = projected @ rotation
    losses = [float((binary_sign(rotated) - rotated).pow(2).sum())]
    for _ in range(iterations):
        left, _, right_t = torch.linalg.svd(binary_sign(rotated).T @ projected)  # B^T V = U_B S U_A^T
        rotation = right_t.T @ left.T  # R = U_A U_B^T
        rotated = projected @ rotation
        losses.append(float((binary_sign(rotated) - rotated).pow(2).sum()))
    return rotation, losses


def random_rotation(size: int, seed: int) -> torch.Tensor:
    """ITQ's initial rotation: the left singular vectors of a Gaussian matrix (float64)."""
    gaussian = torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.linalg.svd(gaussian)[0]


def sh_modes(ranges: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral Hashing's choice of eigenfunctions along directions of width ``ranges``:
    (direction, mode) of the ``bits`` smallest eigenvalues, the constant mode excluded."""
    ranges = ranges.double()
    max_modes = torch.ceil((bits + 1) * ranges / ranges.max()).long()
    directions = torch.cat([torch.full((int(m) - 1,), j, dtype=torch.long) for j, m in enumerate(max_modes)])
    modes = torch.cat([torch.arange(1, int(m), dtype=torch.float64) for m in max_modes])
    eigenvalues = (modes * math.pi / ranges[directions]).pow(2)  # the constant mode (0) is not enumerated
    order = torch.sort(eigenvalues, stable=True).indices[:bits]
    return directions[order], modes[order]


class ProjectionHash(ShallowHash):
    """Codes = (x - mean) @ projection: LSH, PCAH and ITQ."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("mean", torch.zeros(self.feature_dim))
        self.register_buffer("projection", torch.zeros(self.feature_dim, self.bits))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.projection


@register_method("lsh")
class LSH(ProjectionHash):
    """LSH: signs of random Gaussian projections of the centred features."""

    summary = "LSH (Charikar, STOC 2002): signs of random Gaussian projections of centred features"
    paper = "Charikar, STOC 2002"
    fidelity = (
        ("random hyperplanes; MATLAB baselines project uncentred data",
         "centred on the training mean",
         "every bit balanced in expectation"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        generator = torch.Generator().manual_seed(self.seed)
        self.projection.copy_(torch.randn(self.feature_dim, self.bits, generator=generator))

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.mean.copy_(features.double().mean(0))


@register_method("pcah")
class PCAH(ProjectionHash):
    """PCAH: signs of the top-q principal projections."""

    summary = "PCAH (the PCA baseline of Gong & Lazebnik, CVPR 2011): signs of the top-q principal projections"
    paper = "Gong & Lazebnik, CVPR 2011 (its PCA baseline)"
    fidelity = (
        ("the PCA step of `ITQ.m` (`[pc, l] = eigs(cov(X), bit)`), the ITQ paper's \"PCA-Direct\" baseline",
         "sign of the top-q principal projections of the centred features; q above the feature width refused",
         "none"),
    )

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.check_width(features)
        mean, directions = principal_directions(features, self.bits)
        self.mean.copy_(mean)
        self.projection.copy_(directions)


@register_method("itq")
class ITQ(ProjectionHash):
    """ITQ: PCA, then the rotation that minimises the quantization loss ||B - VR||^2."""

    summary = "ITQ (Gong & Lazebnik, CVPR 2011): PCA + an orthogonal rotation minimising quantization loss"
    paper = "Gong & Lazebnik, CVPR 2011"
    iterations = integer(50, 0, help="alternating B / rotation updates (the authors' n_iter)")
    fidelity = (
        ("`ITQ.m`/`compressITQ.m`: centre, PCA, random orthogonal init, B = sign(VR), R = U_A U_B^T",
         "same; init from the run seed; q above the feature width refused",
         "`for iter=0:n_iter` makes 51 updates; hashbench 50"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("rotation", torch.eye(self.bits))
        self.quantization_losses: list[float] = []

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.check_width(features)
        mean, directions = principal_directions(features, self.bits)
        projected = (features.double() - mean) @ directions
        rotation, self.quantization_losses = itq_rotation(projected, random_rotation(self.bits, self.seed),
                                                          self.iterations)
        self.mean.copy_(mean)
        self.rotation.copy_(rotation)
        self.projection.copy_(directions @ rotation)


@register_method("sh")
class SH(ShallowHash):
    """Spectral Hashing: analytical eigenfunctions of a uniform distribution along PCA directions."""

    summary = "SH (Weiss et al., NeurIPS 2008): sinusoidal eigenfunctions along PCA directions, smallest eigenvalues"
    paper = "Weiss et al., NeurIPS 2008"
    fidelity = (
        ("`trainSH.m`/`compressSH.m`: PCA, range min-eps / max+eps, modes up to ceil((q+1) R / maxR), constant mode "
         "skipped, sin(pi/2 + k pi x / R)",
         "same",
         "none"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        components = min(self.bits, self.feature_dim)
        self.register_buffer("directions", torch.zeros(self.feature_dim, components))
        self.register_buffer("minimum", torch.zeros(components))
        self.register_buffer("width", torch.ones(components))
        self.register_buffer("bit_direction", torch.zeros(self.bits, dtype=torch.long))
        self.register_buffer("bit_mode", torch.zeros(self.bits))

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        _, directions = principal_directions(features, self.directions.shape[1])
        projected = features.double() @ directions  # not centred, as in trainSH.m
        eps = torch.finfo(torch.float64).eps
        minimum, maximum = projected.min(0).values - eps, projected.max(0).values + eps
        bit_direction, bit_mode = sh_modes(maximum - minimum, self.bits)
        self.directions.copy_(directions)
        self.minimum.copy_(minimum)
        self.width.copy_(maximum - minimum)
        self.bit_direction.copy_(bit_direction)
        self.bit_mode.copy_(bit_mode)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = (features @ self.directions)[:, self.bit_direction]
        position = (projected - self.minimum[self.bit_direction]) / self.width[self.bit_direction]
        return torch.sin(math.pi / 2 + self.bit_mode * math.pi * position)
