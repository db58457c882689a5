"""DTSH, DSDH and ADSH: losses against loop transcriptions of their formulas (value and
gradient), DTSH's triplet sampler, DSDH's W- and B-steps and ADSH's V-step against their closed
forms, the epoch clock that schedules per-epoch steps, and each method's state and extreme inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import assert_same_value_and_grad, labels_for, shares

from hashbench.blocks import EpochClock
from hashbench.methods.adsh import ADSH, adsh_loss, adsh_v_step, positive_ratio, soft_similarity
from hashbench.methods.dsdh import DSDH, dsdh_b_step, dsdh_loss, dsdh_w_step
from hashbench.methods.dtsh import DTSH, dtsh_loss, sample_triplets

pytestmark = pytest.mark.usefixtures("float64")


def sign(x: float) -> float:
    return 1.0 if x >= 0 else -1.0


def similarity_matrix(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[shares(a, b) for b in yb] for a in ya])


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.exp(x))


def all_finite(loss: torch.Tensor, *tensors: torch.Tensor) -> bool:
    return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(t.grad).all()) for t in tensors)


def make(cls, *, num_train: int = 10, bits: int = 8, multi_label: bool = True, seed: int = 8, **overrides):
    """A method built from its class with its declared defaults, its labels registered."""
    method = cls(feature_dim=5, bits=bits, num_classes=4, num_train=num_train, **{**cls.defaults, **overrides})
    method = method.double()
    method.on_fit_start(labels_for(multi_label, num_train, seed=seed))
    return method


# --- DTSH --------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dtsh_batch_triplets_match_loops(multi_label):
    """triplets=batch: every (i, j != i sharing a label, k sharing none), all three outputs trained."""
    u = torch.randn(6, 8) * 2
    y = labels_for(multi_label, 6, seed=1)
    method = make(DTSH, num_train=20, triplets="batch", margin=1.5, eta=3.0)

    def slow(u):
        total = 0
        for i, j, k in itertools.product(range(6), repeat=3):
            if j != i and shares(y[i], y[j]) and not shares(y[i], y[k]):
                gap = 0.5 * (u[i] * u[j]).sum() - 0.5 * (u[i] * u[k]).sum() - 1.5
                total = total - torch.log(torch.sigmoid(gap))
        quant = sum((torch.sign(u[i, b].detach()) - u[i, b]) ** 2 for i, b in itertools.product(range(6), range(8)))
        return (total + 3.0 * quant) / (6 * 20)

    assert_same_value_and_grad(lambda u: method.loss(u, labels=y, index=torch.arange(6), step=0)["loss"], slow, u)


def test_dtsh_loss_over_given_triplets_matches_loops():
    """The memory form: each anchor's valid (positive, negative) memory rows, all combinations."""
    g = torch.Generator().manual_seed(2)
    u, memory = torch.randn(3, 8, generator=g), torch.randn(9, 8, generator=g)
    pos, neg = torch.randint(0, 9, (3, 2), generator=g), torch.randint(0, 9, (3, 4), generator=g)
    pos_valid = torch.tensor([[True, True], [True, False], [False, False]])
    neg_valid = torch.rand(3, 4, generator=g) > 0.3

    def slow(u, memory):
        total = 0
        for i, p, n in itertools.product(range(3), range(2), range(4)):
            if pos_valid[i, p] and neg_valid[i, n]:
                gap = 0.5 * (u[i] * memory[pos[i, p]]).sum() - 0.5 * (u[i] * memory[neg[i, n]]).sum() - 4.0
                total = total + softplus(-gap)
        return (total + 100.0 * ((u.detach().sign() - u) ** 2).sum()) / 27

    def fast(u, memory):
        return dtsh_loss(codes=u, memory=memory, positives=pos, negatives=neg, positive_valid=pos_valid,
                         negative_valid=neg_valid, margin=4.0, eta=100.0, normalizer=27)["loss"]

    assert_same_value_and_grad(fast, slow, u, memory)


@pytest.mark.parametrize("multi_label", [False, True])
def test_dtsh_sampler_draws_the_reference_triplets(multi_label):
    """Positives share a label, negatives share none and come M2 per class of theirs, none from
    the batch, drawn without replacement; with fewer eligible items, all of them."""
    y = labels_for(multi_label, 60, classes=4, seed=3)
    batch = torch.tensor([0, 5, 9])
    similarity = similarity_matrix(y[batch], y)
    pos, pos_valid, neg, neg_valid = sample_triplets(similarity=similarity, labels=y, batch_index=batch, positives=4,
                                                     negatives_per_class=3)
    outside = torch.ones(60, dtype=torch.bool)
    outside[batch] = False
    for a in range(3):
        positives = pos[a][pos_valid[a]].tolist()
        eligible = [j for j in range(60) if outside[j] and similarity[a, j] > 0]
        assert len(positives) == min(4, len(eligible)) == len(set(positives)) and set(positives) <= set(eligible)
        negatives = neg[a][neg_valid[a]].tolist()
        assert all(outside[j] and similarity[a, j] == 0 for j in negatives)
        for c in range(4):
            of_class = [j for j in range(60) if outside[j] and similarity[a, j] == 0 and y[j, c] > 0]
            drawn = [j for j in negatives if y[j, c] > 0]
            assert len(drawn) >= min(3, len(of_class))  # a multi-label negative may also count for another class
            if not multi_label:
                assert len(drawn) == min(3, len(of_class)) == len(set(drawn))
                assert (len(drawn) == 0) == bool(y[batch[a], c])  # no negatives from the anchor's own class


def test_dtsh_memory_mode_writes_the_batch_first_and_trains_the_anchor_only():
    method = make(DTSH, num_train=30, bits=8, multi_label=False)
    method.memory.copy_(torch.randn(30, 8))
    index = torch.tensor([3, 7, 11, 20])
    u = torch.randn(4, 8, requires_grad=True)
    out = method.loss(u, labels=method.memory_labels[index], index=index, step=0)
    torch.testing.assert_close(method.memory[index], u.detach())
    assert not method.memory.requires_grad
    out["loss"].backward()
    assert u.grad.abs().sum() > 0 and method.margin == 4.0  # margin none: bits / 2


def test_dtsh_is_finite_for_extreme_codes_all_equal_labels_and_no_positives():
    u = torch.full((4, 16), 100.0)
    u[1::2] = -100.0
    u.requires_grad_(True)
    same = torch.ones(4, 1)
    unique = torch.eye(4)
    for labels in (same, unique):  # no negatives at all / no positives at all
        method = DTSH(feature_dim=3, bits=16, num_classes=labels.shape[1], num_train=4,
                      **{**DTSH.defaults, "triplets": "batch"})
        out = method.loss(u, labels=labels, index=torch.arange(4), step=0)["loss"]
        u.grad = None
        out.backward()
        assert all_finite(out, u)
    memory = make(DTSH, num_train=12, bits=16)
    u.grad = None
    out = memory.loss(u, labels=memory.memory_labels[:4], index=torch.arange(4), step=0)["loss"]
    out.backward()
    assert all_finite(out, u)


# --- DSDH --------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dsdh_loss_matches_loops(multi_label):
    u, memory = torch.randn(4, 8) * 2, torch.randn(7, 8) * 2
    s = similarity_matrix(labels_for(multi_label, 4, seed=1), labels_for(multi_label, 7, seed=2))
    b = torch.randn(4, 8).sign()

    def slow(u, memory):
        total = 0
        for i, j in itertools.product(range(4), range(7)):
            theta = 0.5 * (u[i] * memory[j]).sum()
            total = total + softplus(theta) - s[i, j] * theta
        quant = sum((b[i, k] - u[i, k]) ** 2 for i, k in itertools.product(range(4), range(8)))
        return (total + 55.0 * quant) / 28

    assert_same_value_and_grad(
        lambda u, m: dsdh_loss(codes=u, memory=m, similarity=s, binary=b, eta=55.0)["loss"], slow, u, memory)


def dsdh_b_objective(b, u, y, w, mu, eta):
    """The part of DSDH's objective the B-step minimises: mu ||Y - B W||^2 + eta ||B - U||^2."""
    return float(mu * (y - b @ w).pow(2).sum() + eta * (b - u).pow(2).sum())


@pytest.mark.parametrize("multi_label", [False, True])
def test_dsdh_w_step_is_the_ridge_minimiser(multi_label):
    b, y = torch.randn(20, 6).sign(), labels_for(multi_label, 20, seed=4)
    w = dsdh_w_step(binary=b, labels=y, mu=2.0, nu=0.3)
    gradient = 2.0 * b.T @ (b @ w - y) + 0.3 * w  # of mu ||Y - B W||^2 + nu ||W||^2, halved
    torch.testing.assert_close(gradient, torch.zeros(6, 4), atol=1e-10, rtol=0)


def test_dsdh_b_step_from_zeros_matches_the_authors_loop():
    """One pass of ``train.m``'s DCC: B(:, k) = sign(Q(:, k) - Z_k W_k w_k'), Z_k / W_k without bit k."""
    g = torch.Generator().manual_seed(5)
    u, y = torch.randn(6, 5, generator=g), labels_for(True, 6, seed=6)
    w = torch.randn(5, 4, generator=g)
    q = y @ w.T + 55.0 * u
    b = torch.zeros(6, 5)
    for k in range(5):
        z_k, w_k = torch.cat([b[:, :k], b[:, k + 1:]], 1), torch.cat([w[:k], w[k + 1:]])
        b[:, k] = torch.tensor([sign(x) for x in (q[:, k] - z_k @ w_k @ w[k]).tolist()])
    fast = dsdh_b_step(binary=torch.zeros(6, 5), codes=u, labels=y, weights=w, mu=1.0, eta=55.0, sweeps=1)
    torch.testing.assert_close(fast, b, rtol=0, atol=0)


@pytest.mark.parametrize("multi_label", [False, True])
def test_dsdh_b_step_lowers_its_objective_to_a_bitwise_optimum(multi_label):
    g = torch.Generator().manual_seed(7)
    u, y = torch.randn(15, 6, generator=g), labels_for(multi_label, 15, seed=8)
    w, b0 = torch.randn(6, 4, generator=g), torch.randn(15, 6, generator=g).sign()
    b = dsdh_b_step(binary=b0, codes=u, labels=y, weights=w, mu=2.0, eta=0.5, sweeps=50)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    assert dsdh_b_objective(b, u, y, w, 2.0, 0.5) <= dsdh_b_objective(b0, u, y, w, 2.0, 0.5)
    for i, k in itertools.product(range(15), range(6)):
        flipped = b.clone()
        flipped[i, k] *= -1
        assert dsdh_b_objective(flipped, u, y, w, 2.0, 0.5) >= dsdh_b_objective(b, u, y, w, 2.0, 0.5) - 1e-9


def test_dsdh_batch_update_runs_w_then_b_over_every_code_before_the_loss():
    method = make(DSDH, num_train=12, bits=6)
    start = method.binary.clone()
    index = torch.tensor([1, 4, 8])
    u = torch.randn(3, 6, requires_grad=True)
    out = method.loss(u, labels=method.memory_labels[index], index=index, step=0)
    y, memory = method.memory_labels, method.memory
    torch.testing.assert_close(memory[index], u.detach())
    w = dsdh_w_step(binary=start, labels=y, mu=1.0, nu=0.1)
    torch.testing.assert_close(method.weights, w)
    torch.testing.assert_close(method.binary, dsdh_b_step(binary=start, codes=memory, labels=y, weights=w, mu=1.0,
                                                          eta=55.0, sweeps=10))
    expected = dsdh_loss(codes=u, memory=memory, similarity=similarity_matrix(y[index], y),
                         binary=method.binary[index], eta=55.0)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_dsdh_epoch_update_waits_for_the_next_epoch():
    method = make(DSDH, num_train=8, bits=6, bw_update="epoch")
    start = method.binary.clone()
    for index in (torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])):  # epoch 1: the random codes stay
        method.loss(torch.randn(4, 6), labels=method.memory_labels[index], index=index, step=0)
        torch.testing.assert_close(method.binary, start)
    memory = method.memory.clone()
    index = torch.tensor([5, 0, 3, 6])  # epoch 2's first batch: W- and B-step, its outputs written first
    u = torch.randn(4, 6)
    method.loss(u, labels=method.memory_labels[index], index=index, step=2)
    memory[index] = u
    y = method.memory_labels
    w = dsdh_w_step(binary=start, labels=y, mu=1.0, nu=0.1)
    torch.testing.assert_close(method.binary, dsdh_b_step(binary=start, codes=memory, labels=y, weights=w, mu=1.0,
                                                          eta=55.0, sweeps=10))


def test_dsdh_batch_only_update_is_the_authors_per_batch_step():
    method = make(DSDH, num_train=12, bits=6, bw_update="batch_only")
    index = torch.tensor([2, 3, 9])
    u = torch.randn(3, 6)
    y = method.memory_labels[index]
    method.loss(u, labels=y, index=index, step=0)
    w = dsdh_w_step(binary=u.sign(), labels=y, mu=1.0, nu=0.1)
    torch.testing.assert_close(method.weights, w)
    torch.testing.assert_close(method.binary[index], dsdh_b_step(binary=torch.zeros(3, 6), codes=u, labels=y,
                                                                 weights=w, mu=1.0, eta=55.0, sweeps=10))


@pytest.mark.parametrize("bw_update", ["batch", "epoch", "batch_only"])
def test_dsdh_is_finite_for_extreme_codes_and_all_equal_labels(bw_update):
    method = DSDH(feature_dim=3, bits=16, num_classes=1, num_train=6, **{**DSDH.defaults, "bw_update": bw_update})
    method.on_fit_start(torch.ones(6, 1))
    u = torch.full((6, 16), 100.0)
    u[::2] = -100.0
    u.requires_grad_(True)
    for _ in range(2):
        out = method.loss(u, labels=torch.ones(6, 1), index=torch.arange(6), step=0)["loss"]
        u.grad = None
        out.backward()
        assert all_finite(out, u)


# --- ADSH --------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_adsh_loss_matches_loops(multi_label):
    g = torch.Generator().manual_seed(9)
    u = torch.tanh(torch.randn(4, 8, generator=g))
    database = torch.randn(7, 8, generator=g).sign()
    own = database[torch.tensor([1, 3, 5, 6])]
    s = soft_similarity(similarity_matrix(labels_for(multi_label, 4, seed=1), labels_for(multi_label, 7, seed=2)),
                        0.25)
    sampled = torch.tensor([True, False, True, True])

    def slow(u):
        total = 0
        for i in range(4):
            if sampled[i]:
                total = total + sum(((u[i] * database[j]).sum() - 8 * s[i, j]) ** 2 for j in range(7))
                total = total + 200.0 * ((own[i] - u[i]) ** 2).sum()
        return total / 28

    assert_same_value_and_grad(lambda u: adsh_loss(codes=u, database=database, similarity=s, targets=own,
                                                   sampled=sampled, gamma=200.0, bits=8, normalizer=28)["loss"],
                               slow, u)


@pytest.mark.parametrize("multi_label", [False, True])
def test_adsh_soft_similarity_and_ratio(multi_label):
    s = similarity_matrix(labels_for(multi_label, 5, seed=3), labels_for(multi_label, 9, seed=4))
    r = positive_ratio(s)
    assert r.item() == pytest.approx(s.sum().item() / (45 - s.sum().item()))
    soft = soft_similarity(s, r)
    assert torch.equal(soft[s > 0], torch.ones_like(soft[s > 0]))
    torch.testing.assert_close(soft[s == 0], torch.full_like(soft[s == 0], -r.item()))


def adsh_v_objective(v, u, s, sampled, gamma, bits):
    return float((u @ v.T - bits * s).pow(2).sum() + gamma * (v[sampled] - u).pow(2).sum())


def test_adsh_v_step_matches_the_reference_loop_and_each_column_is_exact():
    g = torch.Generator().manual_seed(10)
    n, m, q, gamma = 5, 3, 4, 2.0
    v0 = torch.randn(n, q, generator=g).sign()
    u = torch.tanh(torch.randn(m, q, generator=g))
    s = soft_similarity((torch.rand(m, n, generator=g) > 0.5).double(), 0.3)
    sampled = torch.tensor([4, 0, 2])
    fast = adsh_v_step(database=v0, codes=u, similarity=s, sampled=sampled, gamma=gamma, bits=q)
    # the reference's loop: Q = -2 q S^T U - 2 gamma U_bar, V_k = -sign(2 V_{-k} U_{-k}^T U_k + Q_k)
    u_bar = torch.zeros(n, q)
    u_bar[sampled] = u
    big_q = -2 * q * s.T @ u - 2 * gamma * u_bar
    v = v0.clone()
    for k in range(q):
        v_k, u_k = torch.cat([v[:, :k], v[:, k + 1:]], 1), torch.cat([u[:, :k], u[:, k + 1:]], 1)
        v[:, k] = torch.tensor([sign(-x) for x in (2 * v_k @ u_k.T @ u[:, k] + big_q[:, k]).tolist()])
    torch.testing.assert_close(fast, v, rtol=0, atol=0)
    # the last column updated is the best of all 2^n columns given the others
    last = q - 1
    best = min(adsh_v_objective(torch.cat([fast[:, :last], torch.tensor(c)[:, None]], 1), u, s, sampled, gamma, q)
               for c in itertools.product((-1.0, 1.0), repeat=n))
    assert adsh_v_objective(fast, u, s, sampled, gamma, q) == pytest.approx(best)
    assert adsh_v_objective(fast, u, s, sampled, gamma, q) <= adsh_v_objective(v0, u, s, sampled, gamma, q)


def test_epoch_clock_marks_the_first_batch_of_each_epoch_even_with_a_dropped_remainder():
    clock = EpochClock(10)
    g = torch.Generator().manual_seed(11)
    marks = []
    for _ in range(4):  # 10 items, batches of 4, the remainder of 2 dropped (as the runner does)
        order = torch.randperm(10, generator=g)
        marks += [clock.tick(order[:4]), clock.tick(order[4:8])]
    assert marks == [False, False, True, False, True, False, True, False] and int(clock.epoch) == 3
    one = EpochClock(3)  # a single batch holds the whole training set
    assert [one.tick(torch.arange(3)) for _ in range(3)] == [False, True, True]


def test_adsh_samples_omega_and_updates_v_once_an_outer_iteration():
    method = make(ADSH, num_train=8, bits=6, num_samples=5, epochs_per_iteration=2)
    assert int(method.sampled.sum()) == 5 and not method.database.any()
    first_sample = method.sampled.clone()
    y = method.memory_labels
    torch.testing.assert_close(method.ratio, positive_ratio(similarity_matrix(y[first_sample], y)))
    batches = (torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]))
    for epoch, index in itertools.product(range(2), batches):  # one outer iteration: V and Omega stay
        method.loss(torch.tanh(torch.randn(4, 6)), labels=y[index], index=index, step=epoch)
        assert not method.database.any() and torch.equal(method.sampled, first_sample)
    memory = method.memory.clone()
    index = torch.tensor([3, 1, 6, 0])
    u = torch.tanh(torch.randn(4, 6, requires_grad=True))
    out = method.loss(u, labels=y[index], index=index, step=4)
    omega = first_sample.nonzero().squeeze(1)
    similarity = soft_similarity(similarity_matrix(y[omega], y), positive_ratio(similarity_matrix(y[omega], y)))
    expected_v = adsh_v_step(database=torch.zeros(8, 6), codes=memory[omega], similarity=similarity, sampled=omega,
                             gamma=200.0, bits=6)
    torch.testing.assert_close(method.database, expected_v)
    assert int(method.sampled.sum()) == 5 and not torch.equal(method.sampled, first_sample)  # Omega redrawn
    expected = adsh_loss(codes=u, database=expected_v, similarity=soft_similarity(similarity_matrix(y[index], y),
                                                                                  method.ratio),
                         targets=expected_v[index], sampled=method.sampled[index], gamma=200.0, bits=6,
                         normalizer=4 * 8)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_adsh_sample_follows_the_seed_and_none_takes_every_item():
    a, b = make(ADSH, num_train=30, num_samples=7), make(ADSH, num_train=30, num_samples=7)
    assert torch.equal(a.sampled, b.sampled)
    assert bool(make(ADSH, num_train=30, num_samples=None).sampled.all())
    assert bool(make(ADSH, num_train=30, num_samples=100).sampled.all())


def test_adsh_is_finite_for_saturated_codes_and_all_equal_labels():
    method = ADSH(feature_dim=3, bits=16, num_classes=1, num_train=6, **{**ADSH.defaults, "num_samples": 4})
    method.on_fit_start(torch.ones(6, 1))
    method.database.copy_(torch.randn(6, 16).sign())
    assert math.isfinite(method.ratio.item())
    z = torch.full((6, 16), 100.0, requires_grad=True)
    for _ in range(2):
        out = method.loss(torch.tanh(z), labels=torch.ones(6, 1), index=torch.arange(6), step=0)["loss"]
        z.grad = None
        out.backward()
        assert all_finite(out, z)
