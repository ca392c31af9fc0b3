"""Tests of jaxbgs.eval.ooo: three-way and anchor-rule odd-one-out accuracy on a hand-worked toy."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError
from jaxbgs.eval.ooo import ooo_accuracy

IDS = np.array([10, 20, 30, 40, 50])
_S = {
    (10, 20): 0.9,
    (10, 30): 0.1,
    (10, 40): 0.5,
    (20, 30): 0.2,
    (20, 40): 0.5,
    (30, 40): 0.3,
    (10, 50): 0.0,
    (20, 50): 0.4,
    (30, 50): 0.6,
    (40, 50): 0.7,
}


def _sim(ids=IDS):
    pos = {v: i for i, v in enumerate(ids)}
    s = np.eye(len(ids))
    for (a, b), v in _S.items():
        s[pos[a], pos[b]] = s[pos[b], pos[a]] = v
    return s


# Worked by hand with the similarities above (a = anchor, p = positive, n = negative):
#   trial          odd | model's most similar pair -> odd | anchor rule
#   (10, 20, 30)   30  | 10-20 (.9) -> 30   correct       | a=10 p=20 n=30: .9 > .1  correct
#   (30, 10, 20)   10  | 10-20 (.9) -> 30   wrong         | a=30 p=20 n=10: .2 > .1  correct
#   (20, 10, 40)   40  | 20-10 (.9) -> 40   correct       | a=20 p=10 n=40: .9 > .5  correct
#   (40, 10, 20)   20  | 10-20 (.9) -> 40   wrong         | a=40 p=10 n=20: .5 = .5  tie -> wrong
#   (10, 40, 30)   10  | 10-40 (.5) -> 30   wrong         | a=40 p=30 n=10: .3 < .5  wrong
#   (30, 40, 20)   30  | 40-20 (.5) -> 30   correct       | a=40 p=20 n=30: .5 > .3  correct
TRIALS = Trials(
    items=[[10, 20, 30], [30, 10, 20], [20, 10, 40], [40, 10, 20], [10, 40, 30], [30, 40, 20]],
    odd=[30, 10, 40, 20, 10, 30],
)
THREE = [True, False, True, False, False, True]
ANCHOR = [True, True, True, False, False, True]


def test_hand_computed_accuracies():
    res = ooo_accuracy(_sim(), IDS, TRIALS)
    assert res.n_trials == 6
    np.testing.assert_array_equal(res.three_way_correct, THREE)
    np.testing.assert_array_equal(res.anchor_correct, ANCHOR)
    assert res.three_way == pytest.approx(3 / 6)
    assert res.anchor == pytest.approx(4 / 6)


def test_anchor_depends_on_shown_order():
    # trial 2 shown as (20, 10, 30), odd 10: anchor 20, positive 30, negative 10: .2 > .9 fails.
    # The three-way rule does not look at order: still wrong (model's odd is 30).
    t = Trials(items=[[30, 10, 20], [20, 10, 30]], odd=[10, 10])
    res = ooo_accuracy(_sim(), IDS, t)
    np.testing.assert_array_equal(res.anchor_correct, [True, False])
    np.testing.assert_array_equal(res.three_way_correct, [False, False])


def test_anchor_tie_counts_as_wrong():
    # sim(anchor, positive) == sim(anchor, negative) -> not strictly greater -> wrong
    s = np.ones((5, 5))
    res = ooo_accuracy(s, IDS, Trials(items=[[10, 20, 30]], odd=[30]))
    assert res.anchor == 0.0


def test_invariant_to_row_order_of_similarity():
    base = ooo_accuracy(_sim(), IDS, TRIALS)
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(IDS))
        s = _sim()[np.ix_(perm, perm)]
        np.testing.assert_array_equal(s, _sim(IDS[perm]))  # same matrix written in another order
        res = ooo_accuracy(s, IDS[perm], TRIALS)
        np.testing.assert_array_equal(res.three_way_correct, base.three_way_correct)
        np.testing.assert_array_equal(res.anchor_correct, base.anchor_correct)


def test_unknown_id_raises_input_error():
    t = Trials(items=[[10, 20, 30], [10, 99, 20]], odd=[30, 99])
    with pytest.raises(InputError, match=r"video id\(s\) \[99\] that have no row"):
        ooo_accuracy(_sim(), IDS, t)
    # an id beyond the largest one and one below the smallest
    for bad in (60, 5):
        with pytest.raises(InputError, match=rf"\[{bad}\]"):
            ooo_accuracy(_sim(), IDS, Trials(items=[[bad, 10, 20]], odd=[10]))
