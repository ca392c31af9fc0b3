"""Odd-one-out trials: read, validate at the boundary, select.

Two formats are accepted:
- released (the BGS data): `stim1_name, stim2_name, stim3_name, choice` (+ `participation`,
  `response_time`), video ids 0-249;
- generic: `i, j, k, odd` (+ optional `participant`, `response_time`), CSV or Parquet.
Every problem is an `InputError` naming the file, the line and the fix; nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from jaxbgs.data.tables import Table, float_column, int_column, read_table
from jaxbgs.errors import InputError

RELEASED = ("stim1_name", "stim2_name", "stim3_name", "choice")
GENERIC = ("i", "j", "k", "odd")


@dataclasses.dataclass(frozen=True)
class Trials:
    """A set of odd-one-out trials. `items` keeps the order shown (it matters for the anchor rule)."""

    items: np.ndarray  # (T, 3) int64 video ids, in the order shown
    odd: np.ndarray  # (T,) int64 id chosen as the odd one out
    participant: np.ndarray | None = None  # (T,) object
    response_time: np.ndarray | None = None  # (T,) float64
    source: str = "<memory>"

    def __post_init__(self):
        items = np.asarray(self.items, dtype=np.int64).reshape(-1, 3)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "odd", np.asarray(self.odd, dtype=np.int64).reshape(-1))
        if len(self.odd) != len(items):
            raise ValueError(f"items has {len(items)} trials but odd has {len(self.odd)}")
        if not np.all((items == self.odd[:, None]).any(axis=1)):
            bad = int(np.flatnonzero(~(items == self.odd[:, None]).any(axis=1))[0])
            raise InputError(
                f"trial {bad}: the odd one {self.odd[bad]} is not among {items[bad].tolist()}",
                file=self.source,
                fix="the choice must be one of the three videos shown",
            )

    def __len__(self) -> int:
        return len(self.odd)

    @property
    def has_repeat(self) -> np.ndarray:
        """Trials that show one video twice: they give no pair information a split can use."""
        a, b, c = self.items.T
        return (a == b) | (a == c) | (b == c)

    @property
    def ids(self) -> np.ndarray:
        return np.unique(self.items)

    def select(self, mask: np.ndarray) -> Trials:
        mask = np.asarray(mask)
        pick = lambda x: None if x is None else x[mask]  # noqa: E731
        return Trials(
            self.items[mask], self.odd[mask], pick(self.participant), pick(self.response_time), self.source
        )

    def within(self, ids: Collection[int]) -> np.ndarray:
        """Mask of trials whose three videos all lie in `ids`."""
        return np.isin(self.items, np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)).all(
            axis=1
        )

    def kept_pair(self) -> np.ndarray:
        """(T, 2) the two videos a participant kept together (the non-odd positions, in shown order)."""
        pos_odd = np.argmax(self.items == self.odd[:, None], axis=1)
        keep = np.array([[1, 2], [0, 2], [0, 1]])[pos_odd]
        return np.take_along_axis(self.items, keep, axis=1)


def read_trials(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    known_ids: Collection[int] | None = None,
    allow_repeats: bool = False,
) -> Trials:
    """Read and validate trials.

    `known_ids` (e.g. from the mapping file) makes unknown ids an error. Trials that repeat a video
    are an error unless `allow_repeats` (the raw `all_triplets.csv` has 2,358 of them; a split
    built from it excludes them and says how many).
    """
    table = read_table(path)
    if fmt not in ("auto", "released", "generic"):
        raise InputError(f"unknown judgments format {fmt!r}", fix="use 'released', 'generic' or 'auto'")
    if fmt == "auto":
        fmt = "released" if any(c in table.columns for c in RELEASED) else "generic"
    cols = RELEASED if fmt == "released" else GENERIC
    table.require(cols, f"{fmt} odd-one-out judgments ({', '.join(cols)})")
    if table.n_rows == 0:
        raise InputError(
            "no trials in the file", file=table.path, fix="it needs at least one row of judgments"
        )
    if "catch_trial_flag" in table.columns:  # attention checks are not judgments (all False in the release)
        catch = np.array([str(v).strip().lower() in ("true", "1") for v in table.columns["catch_trial_flag"]])
        if catch.any():
            where, more = _first(table, catch)
            raise InputError(
                f"a catch trial (catch_trial_flag True){more}", file=table.path, where=where,
                fix="remove catch trials (attention checks, not similarity judgments) before use",
            )  # fmt: skip
    items = np.stack([int_column(table, c) for c in cols[:3]], axis=1)
    odd = int_column(table, cols[3])
    _validate(table, cols, items, odd, known_ids, allow_repeats)
    pcol = "participation" if fmt == "released" else "participant"
    participant = np.asarray(table.columns[pcol], dtype=object) if pcol in table.columns else None
    rt = float_column(table, "response_time") if "response_time" in table.columns else None
    return Trials(items, odd, participant, rt, source=str(table.path))


def _first(table: Table, bad: np.ndarray) -> tuple[str, str]:
    idx = np.flatnonzero(bad)
    more = f" ({len(idx)} rows in all)" if len(idx) > 1 else ""
    return table.where(int(idx[0])), more


def _validate(table, cols, items, odd, known_ids, allow_repeats) -> None:
    bad = ~(items == odd[:, None]).any(axis=1)
    if bad.any():
        where, more = _first(table, bad)
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{cols[3]!r} is {odd[i]}, not one of the three videos {items[i].tolist()}{more}",
            file=table.path,
            where=where,
            fix=f"{cols[3]!r} must repeat one of {', '.join(cols[:3])}",
        )
    if (items < 0).any():
        where, more = _first(table, (items < 0).any(axis=1))
        raise InputError(
            f"negative video id{more}",
            file=table.path,
            where=where,
            fix="ids are row indices of the mapping file (0, 1, ...)",
        )
    if known_ids is not None:
        known = np.asarray(sorted(known_ids))
        unknown = ~np.isin(items, known).all(axis=1)
        if unknown.any():
            where, more = _first(table, unknown)
            i = int(np.flatnonzero(unknown)[0])
            ids = [int(x) for x in items[i] if x not in set(known.tolist())]
            raise InputError(
                f"unknown video id(s) {ids}{more}",
                file=table.path,
                where=where,
                fix=f"every id must appear in the mapping file (known ids {known.min()}-{known.max()})",
            )
    if not allow_repeats:
        a, b, c = items.T
        rep = (a == b) | (a == c) | (b == c)
        if rep.any():
            where, more = _first(table, rep)
            i = int(np.flatnonzero(rep)[0])
            raise InputError(
                f"the three videos are not distinct: {items[i].tolist()}{more}",
                file=table.path,
                where=where,
                fix="remove trials that show a video twice, or read the file with allow_repeats=True "
                "(splits then exclude them and report how many)",
            )


def write_trials(trials: Trials, path: str | os.PathLike) -> None:
    """Write trials in the generic format (atomically)."""
    from jaxbgs.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        lines = ["i,j,k,odd"] + [
            f"{a},{b},{c},{o}" for (a, b, c), o in zip(trials.items, trials.odd, strict=True)
        ]
        tmp.write_text("\n".join(lines) + "\n")
