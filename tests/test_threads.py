"""The CPU kernels on several threads give exactly what they give on one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from hashbench.deploy.index import BinaryIndex
from hashbench.eval import evaluate
from hashbench.eval.threads import kernel_threads, over_rows, set_kernel_threads


@pytest.fixture
def threads() -> Iterator[None]:
    yield
    set_kernel_threads(None)


@pytest.mark.parametrize("n_rows,n_threads", [(1, 4), (7, 3), (100, 2), (1000, 3)])
def test_over_rows_covers_every_row_once(threads: None, n_rows: int, n_threads: int) -> None:
    set_kernel_threads(n_threads)
    calls = np.zeros(n_rows, dtype=int)
    workers = set()

    def kernel(start: int, stop: int, out: np.ndarray) -> None:
        workers.add(threading.get_ident())
        out[start:stop] += 1

    over_rows(kernel, n_rows, calls)
    assert (calls == 1).all()
    assert len(workers) <= min(n_threads, n_rows)


def test_over_rows_raises_a_kernels_error(threads: None) -> None:
    set_kernel_threads(2)

    def kernel(start: int, stop: int) -> None:
        if start > 0:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        over_rows(kernel, 50)


def test_thread_count_is_validated_and_resets(threads: None) -> None:
    default = kernel_threads()
    with pytest.raises(ValueError, match="at least 1"):
        set_kernel_threads(0)
    set_kernel_threads(5)
    assert kernel_threads() == 5
    set_kernel_threads(None)
    assert kernel_threads() == default


@pytest.mark.parametrize("ties", ["index", "expected", "random"])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_metrics_do_not_depend_on_thread_count(threads: None, ties: str, backend: str) -> None:
    rng = np.random.default_rng(3)
    codes = rng.normal(size=(400, 8))  # 8 bits: heavy ties
    labels = rng.random((400, 6)) < 0.3
    results = []
    for n_threads in (1, 3):
        set_kernel_threads(n_threads)
        result = evaluate(codes[:90], codes, labels[:90], labels, topks=(None, 5, 50), ties=ties, backend=backend)
        results.append(result)
    one, many = results
    assert one.maps == many.maps
    for field in ("radius_precision", "radius_recall", "precision_at", "recall_at"):
        assert np.array_equal(getattr(one, field), getattr(many, field))


def test_search_does_not_depend_on_thread_count(threads: None) -> None:
    rng = np.random.default_rng(4)
    database = rng.random((5000, 12)) < 0.5
    index = BinaryIndex(database, backend="kernel")
    set_kernel_threads(1)
    one = index.search(database[:70], 10)
    set_kernel_threads(3)
    many = index.search(database[:70], 10)
    assert np.array_equal(one.indices, many.indices) and np.array_equal(one.distances, many.distances)
