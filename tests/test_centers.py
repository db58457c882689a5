"""Hash-center feasibility: impossible sets fail at once in one line; feasible ones meet their distance."""

from __future__ import annotations

import time

import pytest

from hashbench.models import centers
from hashbench.models.centers import (
    balanced_code_bound,
    check_center_feasibility,
    hamming_bound,
    min_pairwise_distance,
    random_centers,
)
from hashbench.validation import HashbenchError


def test_too_many_classes_for_8_bits_fail_fast_with_the_numbers():
    started = time.perf_counter()
    with pytest.raises(HashbenchError, match=r"at most 70 .*8-bit.*; got 100") as error:
        random_centers(100, 8, 2)
    assert time.perf_counter() - started < 1.0
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("num_classes", "bits", "min_distance", "balanced"), [
    (129, 8, 2, False),  # A(8, 2) = 128: the even-weight code
    (17, 8, 4, False),  # A(8, 4) = 16: the extended Hamming code
    (33, 16, 8, False),  # Plotkin: A(2d, d) <= 4d
    (15, 8, 4, True),  # A(8, 4, 4) = 14
])
def test_check_refuses_codes_beyond_the_bound(num_classes, bits, min_distance, balanced):
    with pytest.raises(HashbenchError, match=f"; got {num_classes}$"):
        check_center_feasibility(num_classes, bits, min_distance, balanced=balanced)
    check_center_feasibility(num_classes - 1, bits, min_distance, balanced=balanced)  # the bound is met exactly


def test_bounds_match_known_optimal_codes():
    assert hamming_bound(7, 3) == 16  # the perfect Hamming code
    assert hamming_bound(24, 8) == 4096  # the extended Golay code
    assert hamming_bound(8, 5) == 4
    assert balanced_code_bound(8, 2) == 70  # every balanced byte
    assert balanced_code_bound(8, 4) == 14


@pytest.mark.parametrize(("num_classes", "bits", "min_distance", "balanced"), [
    (70, 8, 2, True), (100, 48, 12, True), (30, 16, 4, False), (100, 64, 23, False),
])
def test_feasible_centers_meet_their_distance(num_classes, bits, min_distance, balanced):
    codes = random_centers(num_classes, bits, min_distance, seed=2, balanced=balanced)
    assert codes.shape == (num_classes, bits)
    assert min_pairwise_distance(codes) >= min_distance


def test_search_that_finds_nothing_gives_up_with_one_line(monkeypatch):
    monkeypatch.setattr(centers, "SEARCH_TIME_LIMIT_S", 0.0)
    with pytest.raises(HashbenchError, match=r"^no 128 hash centers of 8 bits at pairwise distance >= 2 found"):
        random_centers(128, 8, 2, balanced=False)  # A(8, 2) = 128, but greedy random draws stop far short
