"""Pair matrices rebuilt from trials, by hand and against the authors' released CSVs."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.errors import InputError

# Four trials on videos 0-3, worked by hand:
#   (0,1,2) odd 2 -> kept 01 | (0,1,3) odd 3 -> kept 01 | (0,2,3) odd 0 -> kept 23 | (1,0,2) odd 1 -> kept 02
# counts: 01=3, 02=3, 03=2, 12=2, 13=1, 23=1; together: 01=2, 02=1, 23=1.
TOY = Trials([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 0, 2]], [2, 3, 0, 1])


def test_toy_counts_and_similarity():
    m = pair_matrix(TOY)
    np.testing.assert_array_equal(m.ids, [0, 1, 2, 3])
    counts = np.array([[0, 3, 3, 2], [3, 0, 2, 1], [3, 2, 0, 1], [2, 1, 1, 0]])
    np.testing.assert_array_equal(m.counts, counts)
    p = np.array([[1, 2 / 3, 1 / 3, 0], [2 / 3, 1, 0, 0], [1 / 3, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_allclose(m.similarity, p)
    np.testing.assert_allclose(m.distance, 1 - p)
    assert m.n_pairs_observed == 6
    assert np.diag(m.distance).sum() == 0


def test_unobserved_pairs_masked():
    m = pair_matrix(Trials([[0, 1, 2]], [2]), ids=[0, 1, 2, 3])
    assert m.n_pairs_observed == 3
    assert not m.mask[:, 3].any()
    assert m.similarity[0, 3] == 0.0  # as the authors' CSVs store unobserved pairs
    rows, cols = m.observed_pairs()
    np.testing.assert_array_equal(rows, [0, 0, 1])
    np.testing.assert_array_equal(cols, [1, 2, 2])


def test_repeat_trial_counts_distinct_pairs_only():
    # (0,0,1) odd 1: pairs (0,0) skipped, (0,1) twice; kept pair is (0,0): a self pair, skipped.
    m = pair_matrix(Trials([[0, 0, 1]], [1]))
    assert m.counts[0, 1] == 2 and m.together.sum() == 0


def test_trials_outside_ids_are_an_error():
    with pytest.raises(
        InputError, match=r"2 trial\(s\) use videos outside the 3 given ids, e.g. \[0, 1, 3\]"
    ):
        pair_matrix(TOY, ids=[0, 1, 2])


def test_restrict_and_positions():
    m = pair_matrix(TOY)
    sub = m.restrict(np.array([2, 0]))
    np.testing.assert_array_equal(sub.ids, [0, 2])
    assert sub.counts[0, 1] == 3
    with pytest.raises(InputError, match=r"video id\(s\) \[9\] are not in this split's matrix"):
        m.positions(np.array([9]))


# --- the released data ---------------------------------------------------------------------------
def _csv(path):
    return np.loadtxt(path, delimiter=",", skiprows=1)


def test_train_matrix_equals_released_csv(human, data_dir):
    # sim_judg_train_rsm.csv / count_df_train.csv: the authors' matrices from train_triplets.csv.
    m = pair_matrix(human.train, human.train_ids)
    np.testing.assert_allclose(m.similarity, _csv(data_dir / "sim_judg_train_rsm.csv"), atol=1e-12)
    counts = _csv(data_dir / "count_df_train.csv")
    np.testing.assert_array_equal(m.counts, counts[np.ix_(human.train_ids, human.train_ids)])


def test_test_matrix_equals_released_csv(human, data_dir):
    # The authors' test RSM comes from all_triplets restricted to test ids (451 trials, repeats kept).
    raw = human.all_trials
    trials = raw.select(raw.within(human.test_ids))
    assert len(trials) == 451
    m = pair_matrix(trials, human.test_ids)
    np.testing.assert_allclose(m.similarity, _csv(data_dir / "sim_judg_test_rsm.csv"), atol=1e-12)
    counts = _csv(data_dir / "test_df_counts.csv")
    np.testing.assert_array_equal(m.counts, counts[np.ix_(human.test_ids, human.test_ids)])
    assert m.n_pairs_observed == 670


def test_paper_test_split(human):
    # Paper §3.1: 50 test videos, 368 trials, 637 of 1,225 pairs observed.
    m = pair_matrix(human.test, human.test_ids)
    assert (m.n, len(human.test), m.n_pairs_observed) == (50, 368, 637)
    assert m.n * (m.n - 1) // 2 == 1225
