"""SDH: Supervised Discrete Hashing (Shen, Shen, Liu, Shen, CVPR 2015), fitted in closed form.

Reference code: the authors' MATLAB release (``SDH.m``, ``demo_SDH.m``, ``RRC.m``; read in
the copy kept in Eddie-Wang1120/single-modal-supervised-hashing-baseline-for-image-retrieval,
``SSHBIR Toolkit/SDH``). Facts taken from it:

* Features: RBF kernel values on m = 1000 anchors drawn from the training items without
  replacement (``randsample``), phi(x) = [exp(-||x - a_j||^2 / (2 sigma^2)), 1] (a constant
  column for the bias). The demo fixes sigma = 0.4 "for normalized data" and keeps, commented
  out beside it, two widths derived from the data: the root of the mean squared distance
  between training items and anchors (``mean(mean(Dis)).^0.5``, ``Dis`` the squared
  distances) and the mean distance of an item to its nearest anchor. hashbench's
  standardised features are not unit-norm, so ``sigma`` none (the default) derives the width
  from the data, by the first rule: the second collapses when the anchors are a large part of
  the training set (on digits 1,000 of 1,597 items are anchors, at distance 0 from
  themselves: sigma 2.5 against 19.5, mAP 0.38 against 0.98 at 32 bits).
* Objective: min ||Y - B W||^2 + lambda ||W||^2 + nu (||B - phi(X) P||^2 + lambda_F ||P||^2),
  B in {-1, 1}^(N x q), Y the label matrix (a multi-hot matrix is used as given, as ``SDH.m``
  does for a non-vector ``y``), with the L2 loss ("L2") of the demo.
* Initialisation B = sign(randn(N, q)) (the demo's ``randn('seed', 3)``; here the run's seed),
  then a G-step W = (B^T B + lambda I)^-1 B^T Y and an F-step P = (phi^T phi + lambda_F I)^-1
  phi^T B (``RRC.m``), then at most ``iterations`` = 5 (``maxItr`` of the demo) rounds of
  B-step, G-step, F-step, stopping early when ||B - phi P||_F < tol ||B||_F or
  ||P - P_old||_F < tol ||P_old||_2 (tol = 1e-5).
* B-step: discrete cyclic coordinate descent on Q = nu phi P + Y W^T: bit k of every item at
  once, B[:, k] = sgn(Q[:, k] - B_{-k} W_{-k} w_k^T), in ``sweeps`` = 10 passes over the bits
  at most, stopping when ||B - B_old||_F < 1e-6 ||B_old||_F.
* lambda = 1 (``gmap.lambda``), nu = 1e-5 (``Fmap.nu``), lambda_F = 1e-2 (``Fmap.lambda``).
* Codes of new items: sign(phi(x) P) (the demo's ``H = Phi*F.W > 0``, training items
  included: the learned B is not used for the database, ``AsymDist = 0``).

Deviations: MATLAB's sign(0) = 0 would leave a zero in B; hashbench's sgn gives +1 there
(either value leaves the objective unchanged). The anchors, sigma and P are buffers sized in
``__init__`` (m = min(anchors, training items)). On ``digits`` SDH fits on the pixels
(``backbone=raw``): there is no optimizer to train a from-scratch CNN.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hashbench.method import Param, integer, real
from methods.shallow import ShallowHash, signs


def ridge(inputs: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """(X^T X + lam I)^-1 X^T Y: the G-step and F-step of SDH (the authors' ``RRC``)."""
    gram = inputs.T @ inputs + lam * torch.eye(inputs.shape[1], dtype=inputs.dtype, device=inputs.device)
    return torch.linalg.solve(gram, inputs.T @ targets)


def sdh_bit_update(codes: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """The closed-form update of bit ``k`` of every item: sgn(Q[:, k] - B_{-k} W_{-k} w_k^T)."""
    others = codes @ (weights @ weights[k]) - codes[:, k] * weights[k].dot(weights[k])
    return signs(targets[:, k] - others)


def sdh_b_step(codes: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, sweeps: int) -> torch.Tensor:
    """Discrete cyclic coordinate descent on ||Y - B W||^2 + nu ||B - F||^2, Q = Y W^T + nu F."""
    codes = codes.clone()
    for _ in range(sweeps):
        previous = codes.clone()
        for k in range(codes.shape[1]):
            codes[:, k] = sdh_bit_update(codes, targets, weights, k)
        if torch.linalg.norm(codes - previous) < 1e-6 * torch.linalg.norm(previous):
            break
    return codes


def sdh_objective(*, codes: torch.Tensor, labels: torch.Tensor, kernel: torch.Tensor, weights: torch.Tensor,
                  projection: torch.Tensor, g_lambda: float, f_lambda: float, nu: float) -> float:
    """||Y - B W||^2 + lambda ||W||^2 + nu (||B - phi P||^2 + lambda_F ||P||^2): each step lowers it."""
    return float((labels - codes @ weights).pow(2).sum() + g_lambda * weights.pow(2).sum()
                 + nu * ((codes - kernel @ projection).pow(2).sum() + f_lambda * projection.pow(2).sum()))


def sdh_train(*, kernel: torch.Tensor, labels: torch.Tensor, codes: torch.Tensor, g_lambda: float, f_lambda: float,
              nu: float, iterations: int, sweeps: int, tol: float) -> tuple[torch.Tensor, list[float]]:
    """SDH's alternation from initial ``codes``; returns P and the objective after each step."""
    weights, projection = ridge(codes, labels, g_lambda), ridge(kernel, codes, f_lambda)

    def objective() -> float:
        return sdh_objective(codes=codes, labels=labels, kernel=kernel, weights=weights, projection=projection,
                             g_lambda=g_lambda, f_lambda=f_lambda, nu=nu)

    history = [objective()]
    for _ in range(iterations):
        codes = sdh_b_step(codes, nu * kernel @ projection + labels @ weights.T, weights, sweeps)
        history.append(objective())
        weights = ridge(codes, labels, g_lambda)
        history.append(objective())
        previous, projection = projection, ridge(kernel, codes, f_lambda)
        history.append(objective())
        if torch.linalg.norm(codes - kernel @ projection) < tol * torch.linalg.norm(codes):
            break
        if torch.linalg.norm(projection - previous) < tol * torch.linalg.matrix_norm(previous, ord=2):
            break
    return projection, history


def rbf_features(features: torch.Tensor, anchors: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """[exp(-||x - a_j||^2 / (2 sigma^2)), 1]: SDH's kernel features with a bias column."""
    kernel = torch.exp(-torch.cdist(features, anchors).pow(2) / (2 * sigma**2))
    return torch.cat([kernel, torch.ones(len(features), 1, dtype=kernel.dtype, device=kernel.device)], 1)


class SDH(ShallowHash):
    """SDH (CVPR 2015): codes that linearly predict the labels, learned by discrete optimisation."""

    name = "sdh"
    supervised = True
    summary = "SDH (Shen et al., CVPR 2015): RBF anchor features, label regression with discrete cyclic descent"
    params: ClassVar[dict[str, Param]] = {
        "anchors": integer(1000, 1, help="RBF anchors drawn from the training items"),
        "sigma": real(None, 0.0, open_low=True, nullable=True,
                      help="RBF width; none: root mean squared item-anchor distance"),
        "g_lambda": real(1.0, 0.0, help="ridge weight of the label regression W (G-step)"),
        "f_lambda": real(1e-2, 0.0, help="ridge weight of the hash projection P (F-step)"),
        "nu": real(1e-5, 0.0, help="weight of the fit of B to phi(X) P"),
        "iterations": integer(5, 0, help="outer B / G / F rounds"),
        "sweeps": integer(10, 1, help="passes over the bits in one B-step at most"),
        "tol": real(1e-5, 0.0, help="relative change that ends the outer loop"),
    }

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, seed: int = 0,
                 anchors: int, sigma: float | None, g_lambda: float, f_lambda: float, nu: float, iterations: int,
                 sweeps: int, tol: float) -> None:
        super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train, seed=seed)
        self.sigma_value = sigma
        self.g_lambda, self.f_lambda, self.nu = g_lambda, f_lambda, nu
        self.iterations, self.sweeps, self.tol = iterations, sweeps, tol
        count = min(anchors, num_train)
        self.register_buffer("anchors", torch.zeros(count, feature_dim))
        self.register_buffer("sigma", torch.ones(()))
        self.register_buffer("projection", torch.zeros(count + 1, bits))
        self.objective_history: list[float] = []

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        x, y = features.double(), labels.double()
        generator = torch.Generator().manual_seed(self.seed)
        anchors = x[torch.randperm(len(x), generator=generator)[: len(self.anchors)].to(x.device)]
        if self.sigma_value is None:
            sigma = torch.cdist(x, anchors).pow(2).mean().sqrt()
        else:
            sigma = torch.tensor(self.sigma_value, dtype=x.dtype)
        codes = signs(torch.randn(len(x), self.bits, generator=generator, dtype=x.dtype)).to(x.device)
        projection, self.objective_history = sdh_train(
            kernel=rbf_features(x, anchors, sigma), labels=y, codes=codes, g_lambda=self.g_lambda,
            f_lambda=self.f_lambda, nu=self.nu, iterations=self.iterations, sweeps=self.sweeps, tol=self.tol)
        self.anchors.copy_(anchors)
        self.sigma.copy_(sigma)
        self.projection.copy_(projection)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return rbf_features(features, self.anchors, self.sigma) @ self.projection

