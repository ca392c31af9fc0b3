"""Which odd-one-out trials fine-tuning fixes or breaks (BGS paper Appendix N, Figs. 10-11).

Two models (pretrained and fine-tuned similarity matrices over the same video ids) are scored on
human trials with the standard three-way rule of `jaxbgs.eval.ooo`: a model's odd one is the item
outside its most similar pair. A model is right on a unit when its odd one is the human majority
odd one. Units are either unique triplets (default: repeated showings of the same three videos
pool their votes; a tied vote has no majority and is reported as `no_majority`, never scored), or
single trials (`by="trial"`, exactly `ooo_accuracy(...).three_way_correct`). The authors' anchor rule
is left out: it depends on the order a trial was shown in, which a pooled triplet no longer has.

A model's margin on a unit is sim(human-kept pair) - max(sim of the other two pairs): positive when
it agrees with people, and its change under fine-tuning ranks how decisive a flip is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError
from jaxbgs.eval.ooo import _positions

CATEGORIES = ("wrong_to_right", "right_to_wrong", "both_right", "both_wrong", "no_majority")
UNITS = ("triplet", "trial")
ORDERS = ("margin", "votes")


@dataclasses.dataclass(frozen=True, eq=False)
class Agreement:
    by: str
    items: np.ndarray  # (U, 3) video ids (sorted per triplet, or as shown per trial)
    human_odd: np.ndarray  # (U,) majority odd id, -1 without a majority
    n_votes: np.ndarray  # (U,) trials behind the unit
    n_majority: np.ndarray  # (U,) votes for the majority odd one (the tied count without a majority)
    pretrained_odd: np.ndarray  # (U,)
    finetuned_odd: np.ndarray
    pretrained_margin: np.ndarray  # (U,) NaN without a majority
    finetuned_margin: np.ndarray
    category: np.ndarray  # (U,) entries of CATEGORIES
    names: Sequence[str] | Mapping[int, str] | None = None
    captions: Mapping[int, Sequence[str]] | None = None

    @property
    def scored(self) -> np.ndarray:
        return self.human_odd >= 0

    @property
    def pretrained_right(self) -> np.ndarray:
        return self.scored & (self.pretrained_odd == self.human_odd)

    @property
    def finetuned_right(self) -> np.ndarray:
        return self.scored & (self.finetuned_odd == self.human_odd)

    def counts(self) -> dict:
        n = int(self.scored.sum())
        out = {c: int((self.category == c).sum()) for c in CATEGORIES}
        return out | {
            "by": self.by,
            "n_units": len(self.items),
            "n_scored": n,
            "n_trials": int(self.n_votes.sum()),
            "pretrained_accuracy": float(self.pretrained_right.sum() / n) if n else float("nan"),
            "finetuned_accuracy": float(self.finetuned_right.sum() / n) if n else float("nan"),
        }

    def _name(self, i: int):
        if self.names is None:
            return None
        if isinstance(self.names, Mapping):
            return self.names.get(i)
        return self.names[i] if 0 <= i < len(self.names) else None

    def _caption(self, i: int):
        caps = None if self.captions is None else self.captions.get(i)
        return caps[0] if caps else None

    def rows(self, category: str | None = None, *, order: str = "margin") -> list[dict]:
        """Plain rows (one per unit) of a category (all when None), most telling first.

        order="margin": the largest change of margin first (for both_right the most confidently
        right under both models, for both_wrong the most confidently wrong), then human votes;
        order="votes": the most votes for the human majority first, then margin.
        """
        if category is not None and category not in CATEGORIES:
            raise InputError(f"unknown category {category!r}", fix=f"use one of {', '.join(CATEGORIES)}")
        if order not in ORDERS:
            raise InputError(f"unknown order {order!r}", fix=f"use one of {', '.join(ORDERS)}")
        pre, ft = self.pretrained_margin, self.finetuned_margin
        strength = np.select(
            [
                self.category == "wrong_to_right",
                self.category == "right_to_wrong",
                self.category == "both_right",
                self.category == "both_wrong",
            ],
            [ft - pre, pre - ft, np.minimum(pre, ft), -np.maximum(pre, ft)],
            default=0.0,
        )
        strength = np.nan_to_num(strength, nan=0.0)
        first, then = (-strength, -self.n_majority) if order == "margin" else (-self.n_majority, -strength)
        sel = np.lexsort((then, first))  # stable: equal keys keep unit order
        if category is not None:
            sel = sel[self.category[sel] == category]
        return [self._row(int(u)) for u in sel]

    def _row(self, u: int) -> dict:
        row: dict = {"category": str(self.category[u]), "unit": u}
        ids = [int(i) for i in self.items[u]]
        for k, i in enumerate(ids, 1):
            row[f"id_{k}"] = i
        for k, i in enumerate(ids, 1):
            row[f"name_{k}"] = self._name(i)
        for k, i in enumerate(ids, 1):
            row[f"caption_{k}"] = self._caption(i)
        return row | {
            "human_odd": int(self.human_odd[u]),
            "pretrained_odd": int(self.pretrained_odd[u]),
            "finetuned_odd": int(self.finetuned_odd[u]),
            "n_votes": int(self.n_votes[u]),
            "n_majority": int(self.n_majority[u]),
            "pretrained_margin": float(self.pretrained_margin[u]),
            "finetuned_margin": float(self.finetuned_margin[u]),
        }

    def top(self, k: int = 5, *, order: str = "margin") -> dict[str, list[dict]]:
        """The k most telling rows of every category, for a notebook to display."""
        return {c: self.rows(c, order=order)[:k] for c in CATEGORIES}


def _matrix(name: str, s, n: int) -> np.ndarray:
    s = np.asarray(s, np.float64)
    if s.shape != (n, n):
        raise InputError(
            f"{name} has shape {s.shape}; expected ({n}, {n}) to match the {n} ids",
            fix="give one similarity row and column per entry of ids, in the same order",
        )
    if not np.isfinite(s).all():
        raise InputError(f"{name} holds NaN or inf values", fix="embed every video in ids")
    return s


def _model(s: np.ndarray, pos: np.ndarray, items: np.ndarray, human_pos: np.ndarray):
    """Odd id and margin of one model on every unit; column q holds the pair that leaves out item q."""
    a, b, c = pos.T
    pair = np.stack([s[b, c], s[a, c], s[a, b]], axis=1)
    rows = np.arange(len(items))
    odd = items[rows, np.argmax(pair, axis=1)]
    hp = np.clip(human_pos, 0, 2)
    other = np.where(np.arange(3) == hp[:, None], -np.inf, pair).max(1)
    margin = np.where(human_pos >= 0, pair[rows, hp] - other, np.nan)
    return odd, margin


def agreement(
    trials: Trials,
    ids: np.ndarray,
    pretrained: np.ndarray,
    finetuned: np.ndarray,
    *,
    names: Sequence[str] | Mapping[int, str] | None = None,
    captions: Mapping[int, Sequence[str]] | None = None,
    by: str = "triplet",
) -> Agreement:
    """Score both similarity matrices (rows and columns = `ids`) on `trials` and sort units into flips.

    `names` (indexed by id, e.g. `HumanData.video_names`) and `captions` (id -> list, e.g.
    `HumanData.captions`; the first is shown) only label the rows.
    """
    if not isinstance(trials, Trials):
        raise InputError(f"trials must be a Trials object, got {type(trials).__name__}", fix="read_trials()")
    if len(trials) == 0:
        raise InputError("trials is empty", fix="pass the test trials")
    if by not in UNITS:
        raise InputError(f"unknown unit by={by!r}", fix=f"use one of {', '.join(UNITS)}")
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(np.unique(ids)) != len(ids):
        raise InputError(f"ids must be 1-D and distinct, got shape {ids.shape}", fix="one id per matrix row")
    pre = _matrix("pretrained", pretrained, len(ids))
    ft = _matrix("finetuned", finetuned, len(ids))

    if by == "trial":
        items = trials.items
        human_pos = np.argmax(items == trials.odd[:, None], axis=1)
        n_votes = np.ones(len(items), np.int64)
        n_major = n_votes.copy()
    else:
        key = np.sort(trials.items, axis=1)
        items, unit = np.unique(key, axis=0, return_inverse=True)
        unit = unit.ravel()
        slot = np.argmax(key == trials.odd[:, None], axis=1)
        votes = np.bincount(unit * 3 + slot, minlength=3 * len(items)).reshape(-1, 3)
        n_votes = votes.sum(1)
        n_major = votes.max(1)
        unique_max = (votes == n_major[:, None]).sum(1) == 1
        human_pos = np.where(unique_max, np.argmax(votes, axis=1), -1)
    pos = _positions(ids, items.ravel()).reshape(-1, 3)
    rows = np.arange(len(items))
    human_odd = np.where(human_pos >= 0, items[rows, np.clip(human_pos, 0, 2)], -1)
    pre_odd, pre_margin = _model(pre, pos, items, human_pos)
    ft_odd, ft_margin = _model(ft, pos, items, human_pos)
    pre_ok, ft_ok = pre_odd == human_odd, ft_odd == human_odd
    category = np.select(
        [human_pos < 0, ~pre_ok & ft_ok, pre_ok & ~ft_ok, pre_ok & ft_ok],
        ["no_majority", "wrong_to_right", "right_to_wrong", "both_right"],
        default="both_wrong",
    )
    return Agreement(
        by=by,
        items=items,
        human_odd=human_odd,
        n_votes=n_votes,
        n_majority=n_major,
        pretrained_odd=pre_odd,
        finetuned_odd=ft_odd,
        pretrained_margin=pre_margin,
        finetuned_margin=ft_margin,
        category=category,
        names=names,
        captions=captions,
    )
