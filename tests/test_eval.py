"""Retrieval metrics against straightforward brute-force definitions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import subprocess_env

from hashbench.eval import evaluate, mean_average_precision


def brute_force_ap(q_bits, d_bits, q_labels, d_labels, topk):
    """Per-query stable argsort, then precision at the rank of each relevant item in the top K."""
    aps = []
    k = len(d_bits) if topk is None else min(topk, len(d_bits))
    for i in range(len(q_bits)):
        distance = (q_bits[i] != d_bits).sum(1)
        order = np.argsort(distance, kind="stable")[:k]
        relevant = (q_labels[i].astype(int) @ d_labels[order].T.astype(int)) > 0
        if not relevant.any():
            aps.append(0.0)
            continue
        hits = np.cumsum(relevant)
        aps.append(float((hits / np.arange(1, k + 1))[relevant].mean()))
    return float(np.mean(aps))


def random_case(rng, *, multi_label: bool):
    bits = int(rng.choice([4, 8, 16, 70]))  # few bits: many ties
    n_query, n_db, n_classes = int(rng.integers(1, 15)), int(rng.integers(1, 120)), int(rng.integers(1, 7))
    q = rng.normal(size=(n_query, bits))
    d = rng.normal(size=(n_db, bits))
    if multi_label:
        ql = rng.random((n_query, n_classes)) < 0.3
        dl = rng.random((n_db, n_classes)) < 0.3
    else:
        ql = np.eye(n_classes, dtype=bool)[rng.integers(0, n_classes, n_query)]
        dl = np.eye(n_classes, dtype=bool)[rng.integers(0, n_classes, n_db)]
    return q, d, ql, dl


BACKENDS = ["numba", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_map_equals_brute_force(multi_label, backend):
    rng = np.random.default_rng(1 + multi_label)
    for _ in range(60):
        q, d, ql, dl = random_case(rng, multi_label=multi_label)
        topks = (None, 1, 3, len(d), len(d) + 10)
        result = evaluate(q, d, ql, dl, topks=topks, backend=backend)
        for topk in topks:
            expected = brute_force_ap(q >= 0, d >= 0, ql, dl, topk)
            assert result.maps[topk] == pytest.approx(expected, abs=1e-9)


def test_code_and_label_formats_agree():
    rng = np.random.default_rng(3)
    q, d = rng.normal(size=(10, 12)), rng.normal(size=(50, 12))
    ql, dl = rng.integers(0, 4, 10), rng.integers(0, 4, 50)
    real = mean_average_precision(q, d, ql, dl, topk=20)
    signs = mean_average_precision(np.where(q >= 0, 1, -1), np.where(d >= 0, 1, -1), ql, dl, topk=20)
    bits01 = mean_average_precision((q >= 0).astype(int), (d >= 0).astype(int), np.eye(4)[ql], np.eye(4)[dl], topk=20)
    assert real == signs == bits01


def test_query_without_relevant_items_scores_zero_and_counts():
    q = np.ones((2, 8))
    d = np.ones((5, 8))
    # query 0 shares label 0 with everything, query 1 (label 1) with nothing
    assert mean_average_precision(q, d, np.array([0, 1]), np.array([0, 0, 0, 0, 0]), topk=None) == 0.5


def sampled_ap(q_bits, d_bits, q_labels, d_labels, topk, rng, samples):
    """AP@topk of every query under ``samples`` uniformly random orders within tied distances
    (vectorised brute force: sort by distance plus a random fraction), shape (samples, Q)."""
    distance = (q_bits[:, None, :] != d_bits[None]).sum(-1)  # (Q, N)
    relevant = q_labels[:, None] == d_labels[None]
    k = len(d_bits) if topk is None else topk
    keys = distance[None] + rng.random((samples, *distance.shape))
    order = np.argsort(keys, axis=-1)[..., :k]
    hits = np.take_along_axis(np.broadcast_to(relevant, keys.shape), order, -1)
    precision = np.cumsum(hits, -1) / np.arange(1, k + 1)
    found = hits.sum(-1)
    return np.where(found > 0, (precision * hits).sum(-1) / np.maximum(found, 1), 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_ties_matches_random_permutations(backend):
    rng = np.random.default_rng(4)
    q, d = rng.normal(size=(6, 4)), rng.normal(size=(60, 4))
    ql, dl = rng.integers(0, 3, 6), rng.integers(0, 3, 60)
    for topk in (None, 9):
        exact = evaluate(q, d, ql, dl, topks=(topk,), ties="expected", backend=backend).maps[topk]
        samples = sampled_ap(q >= 0, d >= 0, ql, dl, topk, rng, 20000).mean(1)
        stderr = np.std(samples) / np.sqrt(len(samples))
        assert abs(exact - np.mean(samples)) < 5 * stderr + 1e-6
        index_order = mean_average_precision(q, d, ql, dl, topk=topk)
        assert abs(index_order - exact) > 5 * stderr  # the ties matter here: the test has power


def test_expected_equals_index_without_ties():
    rng = np.random.default_rng(5)
    # distinct distances: the database holds one code at each Hamming distance from the query
    bits = 16
    q = np.ones((1, bits))
    d = np.ones((bits + 1, bits))
    for distance in range(bits + 1):
        d[distance, :distance] = -1
    d = d[rng.permutation(bits + 1)]
    dl = rng.integers(0, 2, bits + 1)
    for topk in (None, 5):
        index = mean_average_precision(q, d, np.array([1]), dl, topk=topk)
        assert mean_average_precision(q, d, np.array([1]), dl, topk=topk, ties="expected") == pytest.approx(index)


def test_random_ties_is_seeded():
    rng = np.random.default_rng(6)
    q, d = rng.normal(size=(5, 4)), rng.normal(size=(40, 4))
    ql, dl = rng.integers(0, 3, 5), rng.integers(0, 3, 40)
    a = mean_average_precision(q, d, ql, dl, ties="random", seed=1)
    assert a == mean_average_precision(q, d, ql, dl, ties="random", seed=1)


def test_random_ties_break_a_tie_differently_from_index_order():
    q, d = np.ones((1, 8)), np.ones((40, 8))  # every database item at distance 0: one 40-way tie
    ql, dl = np.array([1]), np.r_[np.ones(5), np.zeros(35)].astype(int)  # the relevant ones come first by index
    assert mean_average_precision(q, d, ql, dl, ties="index") == 1.0
    shuffled = [mean_average_precision(q, d, ql, dl, ties="random", seed=seed) for seed in (1, 2)]
    assert max(shuffled) < 1.0 and shuffled[0] != shuffled[1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_radius_and_precision_at_n_against_brute_force(multi_label, backend):
    rng = np.random.default_rng(7)
    for _ in range(20):
        q, d, ql, dl = random_case(rng, multi_label=multi_label)
        qb, db = q >= 0, d >= 0
        cutoffs = sorted({1, max(1, len(d) // 2), len(d)})
        result = evaluate(q, d, ql, dl, cutoffs=cutoffs, backend=backend)
        bits = q.shape[1]
        precision = np.zeros(bits + 1)
        recall = np.zeros(bits + 1)
        p_at = np.zeros(len(cutoffs))
        r_at = np.zeros(len(cutoffs))
        for i in range(len(q)):
            distance = (qb[i] != db).sum(1)
            relevant = (ql[i].astype(int) @ dl.T.astype(int)) > 0
            for r in range(bits + 1):
                inside = distance <= r
                precision[r] += relevant[inside].sum() / inside.sum() if inside.any() else 0.0
                recall[r] += relevant[inside].sum() / relevant.sum() if relevant.any() else 0.0
            order = np.argsort(distance, kind="stable")
            for c, n in enumerate(cutoffs):
                p_at[c] += relevant[order[:n]].sum() / n
                r_at[c] += relevant[order[:n]].sum() / relevant.sum() if relevant.any() else 0.0
        np.testing.assert_allclose(result.radius_precision, precision / len(q), atol=1e-12)
        np.testing.assert_allclose(result.radius_recall, recall / len(q), atol=1e-12)
        np.testing.assert_allclose(result.precision_at, p_at / len(q), atol=1e-12)
        np.testing.assert_allclose(result.recall_at, r_at / len(q), atol=1e-12)


def test_several_k_in_one_pass():
    rng = np.random.default_rng(8)
    q, d, ql, dl = random_case(rng, multi_label=True)
    result = evaluate(q, d, ql, dl, topks=(None, 2, 5))
    for k in (None, 2, 5):
        assert result.maps[k] == pytest.approx(brute_force_ap(q >= 0, d >= 0, ql, dl, k), abs=1e-9)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        evaluate(np.ones((2, 8)), np.ones((3, 16)), [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.full((1, 8), np.nan), np.ones((3, 8)), [0], [0, 1, 1])


def test_expected_precision_at_n_is_the_mean_over_permutations():
    rng = np.random.default_rng(9)
    q, d = rng.normal(size=(3, 3)), rng.normal(size=(30, 3))
    ql, dl = rng.integers(0, 2, 3), rng.integers(0, 2, 30)
    exact = evaluate(q, d, ql, dl, ties="expected", cutoffs=[5, 12]).precision_at
    samples = []
    for _ in range(3000):
        order = rng.permutation(len(d))
        samples.append(evaluate(q, d[order], ql, dl[order], cutoffs=[5, 12]).precision_at)
    np.testing.assert_allclose(exact, np.mean(samples, axis=0), atol=0.01)


def test_distances_beyond_255_bits():
    rng = np.random.default_rng(10)
    q, d = rng.normal(size=(4, 512)), rng.normal(size=(50, 512))
    ql, dl = np.eye(3)[rng.integers(0, 3, 4)], np.eye(3)[rng.integers(0, 3, 50)]
    expected = brute_force_ap(q >= 0, d >= 0, ql, dl, 10)
    assert mean_average_precision(q, d, ql, dl, topk=10) == pytest.approx(expected, abs=1e-9)


@pytest.mark.slow
def test_evaluation_leaves_torch_thread_count_alone():
    """Evaluating on 2 kernel threads must not change the thread count torch trains the next
    run of a grid with (here 1): numba's OpenMP pool once did, and later runs trained 2-4 x
    slower."""
    script = (
        "import numpy as np, torch\n"
        "from hashbench.eval import evaluate\n"
        "rng = np.random.default_rng(0)\n"
        "codes, labels = rng.standard_normal((50, 16)), rng.integers(0, 3, 50)\n"
        "before = torch.get_num_threads()\n"
        "for ties in ('index', 'expected'):\n"
        "    evaluate(codes, codes, labels, labels, ties=ties, backend='numba')\n"
        "    evaluate(torch.tensor(codes), torch.tensor(codes), labels, labels, ties=ties, backend='torch')\n"
        "print(before, torch.get_num_threads())\n"
    )
    env = subprocess_env(NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
