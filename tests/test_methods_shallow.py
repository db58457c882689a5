"""Shallow and label-free methods: LSH, PCAH, ITQ, SH and SDH fitted in closed form against
transcriptions of their reference MATLAB code, Bi-half's layer and loss against the
authors' PyTorch code, and each on digits through the CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from helpers import assert_same_value_and_grad, labels_for

from hashbench.blocks import dcc_b_step, dcc_bit_update, ridge
from hashbench.losses import feature_similarity_mse
from hashbench.method import create_method
from hashbench.methods.bihalf import bihalf
from hashbench.methods.sdh import rbf_features, sdh_objective, sdh_train
from hashbench.methods.shallow import itq_rotation, principal_directions, random_rotation, sh_modes
from hashbench.registry import METHODS
from hashbench.validation import HashbenchError

SHALLOW = ("lsh", "pcah", "itq", "sh", "sdh")


pytestmark = pytest.mark.usefixtures("float64")


def data(n: int = 60, d: int = 10, seed: int = 0) -> torch.Tensor:
    """Anisotropic, off-centre features (distinct variances, so principal directions are unique)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(3.0, 0.5, d) + 2.0


def fitted(name: str, x: torch.Tensor, labels: torch.Tensor | None = None, bits: int = 4, seed: int = 0, **params):
    classes = 3 if labels is None else labels.shape[1]
    method = create_method(name, feature_dim=x.shape[1], bits=bits, num_classes=classes, num_train=len(x), seed=seed,
                           **params)
    method.fit(x, labels)
    return method


# --- registry facts ----------------------------------------------------------------------

@pytest.mark.parametrize("name", [*SHALLOW, "bihalf"])
def test_families_supervision_and_closed_form(name):
    cls = METHODS.get(name)
    assert cls.supervised is (name == "sdh")
    assert cls.family == ("unsupervised" if name == "bihalf" else "shallow")
    assert cls.closed_form is (name != "bihalf")
    assert cls.dataset_defaults["digits"]["backbone"] == "raw" and cls.train_defaults["frozen_backbone"] is True
    if cls.closed_form:
        method = create_method(name, feature_dim=6, bits=8, num_classes=3, num_train=20)
        assert not list(method.parameters()) and list(method.buffers())


# --- PCA, PCAH, LSH ----------------------------------------------------------------------

def test_principal_directions_are_the_top_eigenvectors_in_order():
    x = data()
    mean, directions = principal_directions(x, 4)
    xc = x.numpy() - x.numpy().mean(0)
    values, vectors = np.linalg.eigh(np.cov(xc.T))
    top = vectors[:, ::-1][:, :4]
    torch.testing.assert_close(mean, x.mean(0))
    np.testing.assert_allclose(np.abs(np.sum(top * directions.numpy(), 0)), 1.0, atol=1e-9)  # same up to sign
    variances = ((x - mean) @ directions).var(0)
    np.testing.assert_allclose(variances.numpy(), values[::-1][:4], rtol=1e-9)


def test_pcah_codes_are_signs_of_the_top_principal_projections():
    x = data()
    method = fitted("pcah", x)
    mean, directions = principal_directions(x, 4)
    torch.testing.assert_close(method.projection, directions)
    torch.testing.assert_close(method(x), (x - mean) @ directions)
    assert (method(x) >= 0).double().mean(0).sub(0.5).abs().max() < 0.3  # centred: both signs occur


def test_projection_methods_refuse_more_bits_than_feature_dimensions():
    for name in ("pcah", "itq"):
        with pytest.raises(HashbenchError, match=f"{name} .*bits must be at most the feature width 10; got 16"):
            fitted(name, data(), bits=16)
    assert fitted("sh", data(), bits=16)(data()).shape == (60, 16)  # SH keeps min(bits, d) directions
    assert fitted("lsh", data(), bits=16)(data()).shape == (60, 16)


def test_lsh_bits_are_balanced_in_expectation_over_draws():
    x = data(40, 6) + torch.tensor([5.0, -3.0, 0.0, 1.0, 2.0, 0.0])  # far off-centre
    bits = torch.stack([fitted("lsh", x, bits=8, seed=seed)(x) >= 0 for seed in range(300)]).double() * 2 - 1
    assert bits.mean((0, 1)).abs().max() < 0.05  # each bit, over draws and items
    assert bits.mean(0).abs().max() < 0.3  # each item's bit, over draws (sd 0.06)
    one = fitted("lsh", x, bits=8, seed=3)
    torch.testing.assert_close(one.mean, x.mean(0))
    torch.testing.assert_close(one.projection, torch.randn(6, 8, generator=torch.Generator().manual_seed(3)))


# --- ITQ ---------------------------------------------------------------------------------

def itq_transcription(v: np.ndarray, r: np.ndarray, n_iter: int) -> np.ndarray:
    """The authors' ITQ.m loop body, in numpy, for ``n_iter`` updates."""
    for _ in range(n_iter):
        z = v @ r
        ux = -np.ones_like(z)
        ux[z >= 0] = 1
        ub, _, ua_t = np.linalg.svd(ux.T @ v)
        r = ua_t.T @ ub.T
    return r


def test_itq_matches_the_reference_loop_and_is_orthogonal():
    x = data(80, 12)
    method = fitted("itq", x, bits=6, seed=2, iterations=20)
    mean, directions = principal_directions(x, 6)
    v = ((x - mean) @ directions).numpy()
    expected = itq_transcription(v, random_rotation(6, 2).numpy(), 20)
    np.testing.assert_allclose(method.rotation.numpy(), expected, atol=1e-9)
    torch.testing.assert_close(method.rotation @ method.rotation.T, torch.eye(6))
    torch.testing.assert_close(method.projection, directions @ method.rotation)
    torch.testing.assert_close(method(x), (x - mean) @ directions @ method.rotation)
    r0 = random_rotation(6, 2)
    torch.testing.assert_close(r0 @ r0.T, torch.eye(6))


def test_itq_quantization_loss_never_increases():
    v = data(200, 8) @ torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    v = v - v.mean(0)
    rotation, losses = itq_rotation(v, random_rotation(8, 0), 50)
    assert len(losses) == 51
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(losses)) and losses[-1] < losses[0]
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(8))
    b = torch.where(v @ rotation >= 0, 1.0, -1.0)
    assert losses[-1] == pytest.approx(float((b - v @ rotation).pow(2).sum()))


# --- Spectral Hashing --------------------------------------------------------------------

def sh_modes_transcription(ranges: np.ndarray, nbits: int) -> np.ndarray:
    """trainSH.m's enumeration: a (nbits, npca) mode matrix, the constant mode dropped."""
    npca = len(ranges)
    max_mode = np.ceil((nbits + 1) * ranges / ranges.max()).astype(int)
    modes = [np.zeros(npca)]
    for i in range(npca):
        for k in range(2, max_mode[i] + 1):
            row = np.zeros(npca)
            row[i] = k - 1
            modes.append(row)
    modes = np.array(modes)
    eig = -((modes * (np.pi / ranges)) ** 2).sum(1)
    order = np.argsort(-eig, kind="stable")
    return modes[order[1 : nbits + 1]]


def test_sh_chooses_the_smallest_eigenvalues_by_hand():
    # ranges 3, 2, 1 at 3 bits: max modes ceil(4 * R / 3) = 4, 3, 2; eigenvalues (k / R)^2 pi^2:
    # direction 0: 1/9, 4/9, 1; direction 1: 1/4, 1; direction 2: 1. Smallest: (0, 1), (1, 1), (0, 2).
    directions, modes = sh_modes(torch.tensor([3.0, 2.0, 1.0]), 3)
    assert directions.tolist() == [0, 1, 0] and modes.tolist() == [1.0, 1.0, 2.0]


@pytest.mark.parametrize("bits", [3, 8, 16])
def test_sh_modes_match_the_reference_enumeration(bits):
    ranges = torch.rand(min(bits, 6), generator=torch.Generator().manual_seed(bits)) * 4 + 0.5
    directions, modes = sh_modes(ranges, bits)
    expected = sh_modes_transcription(ranges.numpy(), bits)
    got = np.zeros_like(expected)
    got[np.arange(bits), directions.numpy()] = modes.numpy()
    np.testing.assert_array_equal(got, expected)


def test_sh_codes_match_compress_sh():
    x = data(50, 7)
    method = fitted("sh", x, bits=5)
    pc = method.directions.numpy()
    projected = x.numpy() @ pc  # trainSH.m: not centred
    mn, mx = projected.min(0) - np.finfo(float).eps, projected.max(0) + np.finfo(float).eps
    modes = sh_modes_transcription(mx - mn, 5)
    omegas = modes * (np.pi / (mx - mn))
    expected = np.stack([np.prod(np.sin((projected - mn) * omegas[i] + np.pi / 2), 1) for i in range(5)], 1)
    np.testing.assert_allclose(method(x).numpy(), expected, atol=1e-9)
    _, directions = principal_directions(x, 5)
    np.testing.assert_allclose(np.abs(np.sum(pc * directions.numpy(), 0)), 1.0, atol=1e-9)


# --- SDH ---------------------------------------------------------------------------------

def b_objective(b, q, w):
    """The part of SDH's objective that the B-step minimises: ||B W||^2 - 2 tr(B^T Q)."""
    return float((b @ w).pow(2).sum() - 2 * (b * q).sum())


def test_dcc_bit_update_is_the_exact_minimiser_over_that_bit():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(5, 3, generator=g).sign()
    w, q = torch.randn(3, 4, generator=g), torch.randn(5, 3, generator=g)
    for k in range(3):
        best = min(itertools.product((-1.0, 1.0), repeat=5),
                   key=lambda z, k=k: b_objective(torch.cat([b[:, :k], torch.tensor(z)[:, None], b[:, k + 1:]], 1),
                                                  q, w))
        torch.testing.assert_close(dcc_bit_update(b, q, w, k), torch.tensor(best))
        # the closed form as written in the paper: z = sgn(q - B'^T W' v)
        others, w_others = torch.cat([b[:, :k], b[:, k + 1:]], 1), torch.cat([w[:k], w[k + 1:]])
        torch.testing.assert_close(dcc_bit_update(b, q, w, k), torch.sign(q[:, k] - others @ w_others @ w[k]))


def test_dcc_b_step_reaches_a_point_no_single_bit_flip_improves():
    g = torch.Generator().manual_seed(1)
    b0 = torch.randn(30, 6, generator=g).sign()
    w, q = torch.randn(6, 3, generator=g), torch.randn(30, 6, generator=g)
    b = dcc_b_step(b0, q, w, sweeps=50)
    assert set(b.unique().tolist()) <= {-1.0, 1.0} and b_objective(b, q, w) <= b_objective(b0, q, w)
    for i, k in itertools.product(range(30), range(6)):
        flipped = b.clone()
        flipped[i, k] *= -1
        assert b_objective(flipped, q, w) >= b_objective(b, q, w) - 1e-9


def test_ridge_is_the_regularised_least_squares_solution():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(20, 5, generator=g), torch.randn(20, 3, generator=g)
    w = ridge(x, y, 0.7)
    torch.testing.assert_close(x.T @ (x @ w - y) + 0.7 * w, torch.zeros(5, 3), atol=1e-10, rtol=0)  # gradient 0


@pytest.mark.parametrize("multi_label", [False, True])
def test_sdh_objective_never_increases(multi_label):
    g = torch.Generator().manual_seed(3)
    y = labels_for(multi_label, 40, classes=4, seed=4)
    kernel = rbf_features(torch.randn(40, 5, generator=g), torch.randn(10, 5, generator=g), 2.0)
    codes = torch.randn(40, 8, generator=g).sign()
    _, history = sdh_train(kernel=kernel, labels=y, codes=codes, g_lambda=1.0, f_lambda=1e-2, nu=1e-1, iterations=5,
                           sweeps=10, tol=0.0)
    assert len(history) == 16 and history[-1] < history[0]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(history))


def test_sdh_objective_matches_its_formula():
    g = torch.Generator().manual_seed(5)
    b, y, k = torch.randn(4, 3, generator=g).sign(), labels_for(True, 4, classes=2), torch.randn(4, 6, generator=g)
    w, p = torch.randn(3, 2, generator=g), torch.randn(6, 3, generator=g)
    loops = 0.0
    for i in range(4):
        loops += sum((y[i, c] - sum(b[i, t] * w[t, c] for t in range(3))) ** 2 for c in range(2))
        loops += 0.5 * sum((b[i, t] - sum(k[i, j] * p[j, t] for j in range(6))) ** 2 for t in range(3))
    loops += 2.0 * w.pow(2).sum() + 0.5 * 0.1 * p.pow(2).sum()
    value = sdh_objective(codes=b, labels=y, kernel=k, weights=w, projection=p, g_lambda=2.0, f_lambda=0.1, nu=0.5)
    assert value == pytest.approx(float(loops))


def test_rbf_features_match_their_formula():
    g = torch.Generator().manual_seed(6)
    x, a = torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)
    phi = rbf_features(x, a, 1.5)
    for i, j in itertools.product(range(3), range(2)):
        assert phi[i, j].item() == pytest.approx(math.exp(-float(((x[i] - a[j]) ** 2).sum()) / (2 * 1.5**2)))
    assert phi[:, 2].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("multi_label", [False, True])
def test_sdh_fit_separates_classes_and_keeps_its_state_in_buffers(multi_label):
    y = labels_for(multi_label, 90, classes=3, seed=7)
    x = y @ torch.randn(3, 6, generator=torch.Generator().manual_seed(8)) * 3 + torch.randn(90, 6) * 0.3
    method = fitted("sdh", x, y, bits=8, anchors=30)
    assert method.anchor_points.shape == (30, 6) and method.projection.shape == (31, 8)
    expected_sigma = torch.cdist(x, method.anchor_points).pow(2).mean().sqrt()
    assert method.rbf_sigma.item() == pytest.approx(expected_sigma.item())
    torch.testing.assert_close(method(x), rbf_features(x, method.anchor_points, method.rbf_sigma) @ method.projection)
    history = method.objective_history
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(history))
    codes = method(x) >= 0
    same = (y @ y.T > 0).double()
    agreement = (codes[:, None] == codes[None]).double().mean(-1)
    assert (agreement * same).sum() / same.sum() > (agreement * (1 - same)).sum() / (1 - same).sum() + 0.2
    assert create_method("sdh", feature_dim=6, bits=8, num_classes=3, num_train=12).anchor_points.shape == (12, 6)
    assert fitted("sdh", x, y, bits=8, anchors=30, sigma=0.4).rbf_sigma.item() == pytest.approx(0.4)


def test_sdh_is_finite_on_far_apart_points():
    x = torch.randn(20, 4) * 1e3
    y = labels_for(False, 20, classes=3)
    out = fitted("sdh", x, y, bits=8, anchors=5)(x)
    assert torch.isfinite(out).all()


# --- label-free methods: labels play no part ----------------------------------------------

@pytest.mark.parametrize("name", ["lsh", "pcah", "itq", "sh"])
def test_label_free_fits_ignore_labels(name):
    x = data(40, 8)
    y = labels_for(False, 40, classes=3)
    with_labels, without = fitted(name, x, y[torch.randperm(40)]), fitted(name, x, None)
    torch.testing.assert_close(with_labels(x), without(x))


# --- Bi-half -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [8, 9])
def test_bihalf_forward_gives_half_plus_ones_per_bit(n):
    u = torch.randn(n, 5)
    b = bihalf(u, 6.0)
    assert (b.abs() == 1).all() and ((b > 0).sum(0) == n // 2).all()
    for j in range(5):  # the top half of the batch by value gets +1
        top = set(u[:, j].argsort(descending=True)[: n // 2].tolist())
        assert top == set(torch.nonzero(b[:, j] > 0).flatten().tolist())
    tied = bihalf(torch.zeros(6, 2), 6.0)  # ties still split half / half
    assert ((tied > 0).sum(0) == 3).all()


def test_bihalf_backward_matches_the_reference():
    u = torch.randn(6, 4, requires_grad=True)
    g = torch.randn(6, 4)
    b = bihalf(u, 6.0)
    (grad,) = torch.autograd.grad(b, u, g)
    torch.testing.assert_close(grad, g + 6.0 * (u.detach() - b.detach()) / 24)


@pytest.mark.parametrize("n", [6, 7])
def test_feature_similarity_mse_matches_loops(n):
    g = torch.Generator().manual_seed(9)
    codes, features = torch.randn(n, 8, generator=g), torch.randn(n, 5, generator=g)

    def slow(codes, features):
        half = n // 2
        total = 0
        for i in range(half):
            a, b = codes[i], codes[half + i]
            x, y = features[i], features[half + i]
            cos_b = (a * b).sum() / (a.norm() * b.norm())
            cos_x = (x * y).sum() / (x.norm() * y.norm())
            total = total + (cos_b - cos_x) ** 2
        return total / half

    assert_same_value_and_grad(lambda c, f: feature_similarity_mse(codes=c, features=f), slow, codes, features)


def test_feature_similarity_mse_and_gradient_are_finite_at_extremes():
    u = torch.full((8, 16), 100.0, requires_grad=True)
    for features in (torch.zeros(8, 5), torch.full((8, 5), 1e6)):
        out = feature_similarity_mse(codes=bihalf(u, 6.0), features=features)
        (grad,) = torch.autograd.grad(out, u)
        assert torch.isfinite(out) and torch.isfinite(grad).all()


def test_bihalf_method_trains_its_head_without_labels():
    method = create_method("bihalf", feature_dim=5, bits=8, num_classes=3, num_train=20)
    x = torch.randn(10, 5)
    out = method(x)
    assert method.codes(out) is out.codes and out.codes.shape == (10, 8) and not out.features.requires_grad
    losses = method.loss(out, labels=None, index=torch.arange(10), step=0)
    losses["loss"].backward()
    weight = method.hash_layer[1].weight
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


# --- end to end on digits ----------------------------------------------------------------

@pytest.fixture
def float32():
    """The runner's dtype (requested fixtures run after the module's float64 one)."""
    torch.set_default_dtype(torch.float32)


@pytest.mark.slow
def test_each_method_fits_on_digits_well_above_chance(cli, tmp_path, float32):
    names = [*SHALLOW, "bihalf"]
    result = cli("run", "--methods", ",".join(names), "--bits", "32", "--results", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    for name in names:
        metrics = json.loads((tmp_path / "digits" / name / "32" / "seed0" / "result.json").read_text())["metrics"]
        assert metrics[f"map_expected@{metrics['topk']}"] > 0.3, name  # chance is about 0.1

