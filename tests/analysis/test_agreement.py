"""Agreement tables: a hand-worked 4-trial case, majority votes, the ooo convention, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.analysis.agreement import CATEGORIES, agreement
from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError
from jaxbgs.eval.ooo import ooo_accuracy

IDS = np.array([10, 11, 12, 13])


def sims(pairs: dict) -> np.ndarray:
    s = np.eye(4)
    for (i, j), v in pairs.items():
        s[i - 10, j - 10] = s[j - 10, i - 10] = v
    return s


# Pretrained: 10-11 .9, 10-12 .1, 10-13 .2, 11-12 .3, 11-13 .4, 12-13 .8
PRE = sims({(10, 11): 0.9, (10, 12): 0.1, (10, 13): 0.2, (11, 12): 0.3, (11, 13): 0.4, (12, 13): 0.8})
# Fine-tuned: 10-11 .2, 10-12 .9, 10-13 .7, 11-12 .1, 11-13 .3, 12-13 .4
FT = sims({(10, 11): 0.2, (10, 12): 0.9, (10, 13): 0.7, (11, 12): 0.1, (11, 13): 0.3, (12, 13): 0.4})
# Worked by hand, odd one = the item outside the most similar pair:
#   triplet        human  pretrained (top pair)  fine-tuned (top pair)  category
#   10 11 12       12     12 (10-11 .9)           11 (10-12 .9)          right_to_wrong
#   10 11 13       11     13 (10-11 .9)           11 (10-13 .7)          wrong_to_right
#   10 12 13       12     10 (12-13 .8)           13 (10-12 .9)          both_wrong
#   11 12 13       11     11 (12-13 .8)           11 (12-13 .4)          both_right
TRIALS = Trials(
    np.array([[10, 11, 12], [13, 11, 10], [12, 10, 13], [11, 12, 13]]), np.array([12, 11, 12, 11])
)
NAMES = {i: f"video{i}.mp4" for i in IDS}
CAPTIONS = {10: ["a dog runs", "x"], 11: ["two people talk"], 12: ["a man cooks"], 13: ["kids play"]}


def test_hand_built_flips():
    a = agreement(TRIALS, IDS, PRE, FT, names=NAMES, captions=CAPTIONS)
    assert a.items.tolist() == [[10, 11, 12], [10, 11, 13], [10, 12, 13], [11, 12, 13]]  # sorted units
    assert a.category.tolist() == ["right_to_wrong", "wrong_to_right", "both_wrong", "both_right"]
    assert a.pretrained_odd.tolist() == [12, 13, 10, 11] and a.finetuned_odd.tolist() == [11, 11, 13, 11]
    # Margin = sim(human-kept pair) - best other pair, e.g. triplet 10 11 12 keeps 10-11: .9-.3, .2-.9.
    np.testing.assert_allclose(a.pretrained_margin, [0.6, -0.7, -0.6, 0.4])
    np.testing.assert_allclose(a.finetuned_margin, [-0.7, 0.4, -0.2, 0.1])
    c = a.counts()
    assert {k: c[k] for k in CATEGORIES} == {
        "wrong_to_right": 1,
        "right_to_wrong": 1,
        "both_right": 1,
        "both_wrong": 1,
        "no_majority": 0,
    }
    assert (c["pretrained_accuracy"], c["finetuned_accuracy"], c["n_trials"]) == (0.5, 0.5, 4)
    top = a.top(3)
    assert [len(top[k]) for k in CATEGORIES] == [1, 1, 1, 1, 0]
    row = top["wrong_to_right"][0]
    assert row == {
        "category": "wrong_to_right",
        "unit": 1,
        "id_1": 10,
        "id_2": 11,
        "id_3": 13,
        "name_1": "video10.mp4",
        "name_2": "video11.mp4",
        "name_3": "video13.mp4",
        "caption_1": "a dog runs",  # the first caption
        "caption_2": "two people talk",
        "caption_3": "kids play",
        "human_odd": 11,
        "pretrained_odd": 13,
        "finetuned_odd": 11,
        "n_votes": 1,
        "n_majority": 1,
        "pretrained_margin": pytest.approx(-0.7),
        "finetuned_margin": pytest.approx(0.4),
    }


def test_majority_vote_ties_and_ranking():
    extra = Trials(
        np.array([[11, 13, 10], [10, 13, 11], [12, 11, 10], [13, 12, 11]]),
        np.array([11, 10, 10, 13]),
    )
    both = Trials(np.concatenate([TRIALS.items, extra.items]), np.concatenate([TRIALS.odd, extra.odd]))
    a = agreement(both, IDS, PRE, FT)
    # 10 11 13: votes 11, 11, 10 -> majority 11 (2 of 3). 10 11 12: 12 vs 10, tie. 11 12 13: 11 vs 13, tie.
    assert a.n_votes.tolist() == [2, 3, 1, 2] and a.n_majority.tolist() == [1, 2, 1, 1]
    assert a.human_odd.tolist() == [-1, 11, 12, -1]
    assert a.category.tolist() == ["no_majority", "wrong_to_right", "both_wrong", "no_majority"]
    assert np.isnan(a.pretrained_margin[[0, 3]]).all()
    c = a.counts()
    assert (c["no_majority"], c["n_scored"], c["n_units"], c["n_trials"]) == (2, 2, 4, 8)
    assert c["finetuned_accuracy"] == 0.5 and c["pretrained_accuracy"] == 0.0
    assert [r["unit"] for r in a.rows("no_majority")] == [0, 3]
    # Ranking: the larger margin change first; order="votes" puts the better-supported unit first.
    flips = Trials(np.array([[10, 11, 13]] + [[11, 12, 13]] * 3), np.array([11, 13, 13, 13]))
    s_pre = sims({(10, 11): 0.9, (10, 12): 0.5, (10, 13): 0.2, (11, 12): 0.3, (11, 13): 0.4, (12, 13): 0.45})
    s_ft = sims({(10, 11): 0.1, (10, 12): 0.5, (10, 13): 0.95, (11, 12): 0.5, (11, 13): 0.3, (12, 13): 0.4})
    b = agreement(flips, IDS, s_pre, s_ft)
    assert b.category.tolist() == ["wrong_to_right", "wrong_to_right"]
    # Unit 0 (10 11 13, 1 vote) keeps 10-13: margin .2-.9 -> .95-.3, a change of 1.35.
    # Unit 1 (11 12 13, 3 votes) keeps 11-12: margin .3-.45 -> .5-.4, a change of 0.25.
    np.testing.assert_allclose(b.finetuned_margin - b.pretrained_margin, [1.35, 0.25])
    assert [r["unit"] for r in b.rows("wrong_to_right")] == [0, 1]
    assert [r["unit"] for r in b.rows("wrong_to_right", order="votes")] == [1, 0]
    assert b.top(1, order="votes")["wrong_to_right"][0]["n_majority"] == 3


def test_by_trial_equals_ooo_three_way():
    rng = np.random.default_rng(0)
    ids = np.arange(100, 130)
    items = np.stack([rng.choice(ids, 3, replace=False) for _ in range(200)])
    trials = Trials(items, items[np.arange(200), rng.integers(0, 3, 200)])
    e1, e2 = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    pre, ft = e1 @ e1.T, e2 @ e2.T
    a = agreement(trials, ids, pre, ft, by="trial")
    np.testing.assert_array_equal(a.pretrained_right, ooo_accuracy(pre, ids, trials).three_way_correct)
    np.testing.assert_array_equal(a.finetuned_right, ooo_accuracy(ft, ids, trials).three_way_correct)
    np.testing.assert_array_equal(a.pretrained_margin > 0, a.pretrained_right)
    assert sum(a.counts()[k] for k in CATEGORIES) == 200 and a.counts()["no_majority"] == 0
    assert a.rows()[0]["name_1"] is None and a.rows()[0]["caption_1"] is None  # labels are optional


@pytest.mark.parametrize(
    "change, match",
    [
        ({"pretrained": np.eye(3)}, r"pretrained has shape \(3, 3\); expected \(4, 4\)"),
        ({"finetuned": np.eye(4)[:, :3]}, r"finetuned has shape \(4, 3\)"),
        ({"ids": np.array([10, 11, 12, 12])}, r"ids must be 1-D and distinct"),
        ({"ids": np.array([10, 11, 12, 14])}, r"video id\(s\) \[13\] that have no row"),
        ({"by": "pair"}, r"unknown unit by='pair'"),
        ({"trials": np.zeros((4, 3))}, r"trials must be a Trials object"),
        ({"finetuned": np.full((4, 4), np.nan)}, r"finetuned holds NaN"),
    ],
)
def test_bad_inputs(change, match):
    args = {"trials": TRIALS, "ids": IDS, "pretrained": PRE, "finetuned": FT} | change
    with pytest.raises(InputError, match=match):
        agreement(**args)
    with pytest.raises(InputError, match="unknown category"):
        agreement(TRIALS, IDS, PRE, FT).rows("flipped")
