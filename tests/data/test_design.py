"""Tests for the greedy pair-covering triplet design (BGS Appendix E, Algorithm 1)."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbgs.data import design as design_module
from jaxbgs.data.design import TripletDesign, greedy_triplet_design


def schoenheim_bound(n: int) -> int:
    """Fewest triplets that can cover all pairs of n items (Schönheim bound, tight for triples)."""
    return math.ceil(n / 3 * math.ceil((n - 1) / 2))


def check_design(d: TripletDesign, n: int, set_size: int) -> None:
    n_pairs = n * (n - 1) // 2
    t = d.triplets
    assert t.dtype == np.int64 and t.ndim == 2 and t.shape[1] == 3
    assert d.n_items == n and d.set_size == set_size
    total = t.shape[0]
    assert total % set_size == 0
    assert total == math.ceil(d.n_cover / set_size) * set_size  # padding adds less than one set
    np.testing.assert_array_equal(d.set_index, np.arange(total) // set_size)
    assert ((t >= 0) & (t < n)).all()
    assert ((t[:, 0] != t[:, 1]) & (t[:, 0] != t[:, 2]) & (t[:, 1] != t[:, 2])).all()
    # every kept greedy triplet covers a new pair, so the cover is between the optimum and one per pair
    assert schoenheim_bound(n) <= d.n_cover <= n_pairs
    # cover triplets are distinct and padding avoids repeats until all C(n, 3) are used
    assert len(np.unique(np.sort(t, axis=1), axis=0)) == min(total, math.comb(n, 3))
    cov = d.pair_coverage()
    assert cov.shape == (n, n)
    np.testing.assert_array_equal(cov, cov.T)
    assert (np.diag(cov) == 0).all()
    assert (cov[np.triu_indices(n, 1)] >= 1).all(), "some pair never appears"
    assert cov.sum() == 6 * total


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 30),
    set_size=st.integers(1, 25),
    seed=st.integers(0, 2**32 - 1),
    pool_size=st.sampled_from([1, 2, 7, 10_000]),
)
def test_property_full_coverage(n, set_size, seed, pool_size):
    check_design(greedy_triplet_design(n, set_size, seed=seed, pool_size=pool_size), n, set_size)


def test_three_items_one_triplet():
    d = greedy_triplet_design(3, 1)
    assert d.n_cover == 1
    assert sorted(d.triplets[0].tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(d.pair_coverage(), 1 - np.eye(3, dtype=np.int64))


def test_three_items_padding_must_repeat():
    d = greedy_triplet_design(3, 5)
    assert d.n_cover == 1 and d.triplets.shape == (5, 3)
    assert (np.sort(d.triplets, axis=1) == [0, 1, 2]).all()


@pytest.mark.parametrize("seed", range(5))
def test_four_items_need_exactly_three(seed):
    # Any two 3-subsets of 4 items share a pair, so two triplets cover at most 5 of the 6 pairs; the
    # greedy's second triplet always adds 2 and its third the last 1.
    d = greedy_triplet_design(4, 1, seed=seed)
    assert d.n_cover == 3
    check_design(d, 4, 1)


@pytest.mark.parametrize("seed", range(5))
def test_five_items_reach_optimum(seed):
    # 10 pairs; optimum 4 ({a,b,c}, {x,d,e}, then two triplets adding 2 each). With the default
    # pool every one of the 10 possible triplets is a candidate, so the greedy finds it.
    assert greedy_triplet_design(5, 1, seed=seed).n_cover == 4


def test_deterministic_by_seed():
    a = greedy_triplet_design(20, 7, seed=3)
    b = greedy_triplet_design(20, 7, seed=3)
    np.testing.assert_array_equal(a.triplets, b.triplets)
    np.testing.assert_array_equal(a.set_index, b.set_index)
    assert a.n_cover == b.n_cover


def test_different_seeds_differ():
    a = greedy_triplet_design(20, 7, seed=0)
    b = greedy_triplet_design(20, 7, seed=1)
    assert a.triplets.shape != b.triplets.shape or not np.array_equal(a.triplets, b.triplets)


def test_arrays_are_read_only():
    d = greedy_triplet_design(6, 4)
    with pytest.raises(ValueError, match="read-only"):
        d.triplets[0, 0] = 0
    with pytest.raises(ValueError, match="read-only"):
        d.set_index[0] = 1


def test_to_csv_round_trip(tmp_path):
    d = greedy_triplet_design(9, 4, seed=2)
    path = tmp_path / "sub" / "design.csv"
    d.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["set", "trial", "i", "j", "k"]
    body = np.array(rows[1:], dtype=np.int64)
    assert body.shape == (d.triplets.shape[0], 5)
    np.testing.assert_array_equal(body[:, 0], d.set_index)
    np.testing.assert_array_equal(body[:, 1], np.arange(len(body)) % 4)
    np.testing.assert_array_equal(body[:, 2:], d.triplets)
    assert sorted(p.name for p in path.parent.iterdir()) == ["design.csv"]  # no temp file left


def test_to_csv_failure_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "design.csv"
    path.write_text("previous\n")

    class Boom:
        def __init__(self, f):
            self.f = f

        def writerow(self, row):
            self.f.write("half,")

        def writerows(self, rows):
            raise OSError("disk full")

    monkeypatch.setattr(design_module.csv, "writer", Boom)
    with pytest.raises(OSError, match="disk full"):
        greedy_triplet_design(5, 2).to_csv(path)
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["design.csv"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_items": 2}, r"n_items must be an integer >= 3 \(got 2\): a triplet needs three distinct items"),
        ({"n_items": 5.0}, r"n_items must be an integer >= 3 \(got 5\.0\)"),
        ({"n_items": True}, r"n_items must be an integer >= 3 \(got True\)"),
        ({"n_items": 5, "set_size": 0}, r"set_size must be an integer >= 1 \(got 0\): .*participant sets"),
        ({"n_items": 5, "set_size": "220"}, r"set_size must be an integer >= 1 \(got '220'\)"),
        ({"n_items": 5, "pool_size": 0}, r"pool_size must be an integer >= 1 \(got 0\): .*candidate"),
        ({"n_items": 5, "seed": -1}, r"seed must be an integer >= 0 \(got -1\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_triplet_design(**kwargs)


def test_numpy_integer_arguments_accepted():
    d = greedy_triplet_design(np.int64(6), np.int32(4), seed=np.uint8(1), pool_size=np.int16(50))
    assert type(d.n_items) is int and type(d.set_size) is int
    check_design(d, 6, 4)


def test_paper_scale_n250():
    """Acceptance: the paper's 250 items, 220 trials per participant (paper: 10,780 triplets)."""
    start = time.perf_counter()
    d = greedy_triplet_design(250, 220, seed=0)
    elapsed = time.perf_counter() - start
    cov = d.pair_coverage()
    assert (cov[np.triu_indices(250, 1)] >= 1).sum() == 31_125
    assert d.n_cover >= 10_375  # 31,125 pairs / 3 per triplet
    assert d.triplets.shape[0] <= 10_900 and d.triplets.shape[0] % 220 == 0
    assert elapsed < 30
