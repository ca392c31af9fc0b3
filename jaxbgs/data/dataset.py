"""The released BGS human data directory (`../shared/data/bgs_human` layout), loaded and cross-checked.

`load_human_data(DIR)` reads the mapping, the 200/50 train/test video lists, the train and test
judgments and (when present) the raw `all_triplets.csv`; it checks that the stimulus sets are
disjoint and that each split's trials stay inside its videos. Captions and ratings load on demand.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from jaxbgs.data.judgments import Trials, read_trials
from jaxbgs.data.tables import float_column, int_column, read_table
from jaxbgs.errors import InputError

FILES = {
    "mapping": "video_mapping.csv",
    "train_videos": "train.csv",
    "test_videos": "test.csv",
    "train_trials": "train_triplets.csv",
    "test_trials": "test_triplets.csv",
    "all_trials": "all_triplets.csv",
    "captions": "captions.csv",
    "annotations": "annotations.csv",
}
SOURCE = "the BGS release (github.com/garciakathy/similarity-judgments-finetuning, data/interim/similarity)"


@dataclasses.dataclass(frozen=True)
class HumanData:
    root: Path
    video_names: tuple[str, ...]  # index = video id
    train_ids: np.ndarray  # sorted
    test_ids: np.ndarray  # sorted
    train: Trials
    test: Trials

    @property
    def name_to_id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.video_names)}

    def split(self, name: str) -> tuple[np.ndarray, Trials]:
        if name not in ("train", "test"):
            raise InputError(f"unknown split {name!r}", fix="use 'train' or 'test'")
        return (self.train_ids, self.train) if name == "train" else (self.test_ids, self.test)

    @functools.cached_property
    def all_trials(self) -> Trials:
        """The raw trials, repeats included (reported by `summary`, excluded by every split)."""
        return read_trials(
            self.root / FILES["all_trials"], known_ids=range(len(self.video_names)), allow_repeats=True
        )

    def summary(self) -> dict:
        out = {
            "n_videos": len(self.video_names),
            "n_train_videos": len(self.train_ids),
            "n_test_videos": len(self.test_ids),
            "n_train_trials": len(self.train),
            "n_test_trials": len(self.test),
        }
        if (self.root / FILES["all_trials"]).is_file():
            raw = self.all_trials
            rep = raw.has_repeat
            out |= {
                "n_all_trials": len(raw),
                "n_all_trials_repeating_a_video": int(rep.sum()),
                "n_participants": len(set(raw.participant.tolist())) if raw.participant is not None else None,
            }
        return out

    @functools.cached_property
    def captions(self) -> dict[int, list[str]]:
        return read_captions(self.root / FILES["captions"], self.name_to_id)

    def ratings(self) -> tuple[np.ndarray, list[str]]:
        """(n_videos, n_ratings) matrix in id order and the rating names (without the `rating-` prefix)."""
        return read_ratings(self.root / FILES["annotations"], self.name_to_id)


def _path(root: Path, key: str) -> Path:
    p = root / FILES[key]
    if not p.is_file():
        raise InputError(
            f"{FILES[key]} not found in the data directory",
            file=root,
            fix=f"point --data at a directory holding {FILES[key]} from {SOURCE}",
        )
    return p


def read_mapping(path: str | os.PathLike) -> tuple[str, ...]:
    t = read_table(path)
    t.require(("index", "video_name"), "the video mapping")
    idx = int_column(t, "index", what="the row's video id")
    if not np.array_equal(idx, np.arange(len(idx))):
        i = int(np.flatnonzero(idx != np.arange(len(idx)))[0])
        raise InputError(
            f"index {idx[i]} where {i} was expected",
            file=t.path,
            where=t.where(i),
            fix="ids must run 0, 1, 2, ... in row order",
        )
    names = tuple(str(n) for n in t.columns["video_name"])
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise InputError(
                f"video {n!r} listed twice (also id {seen[n]})",
                file=t.path,
                where=t.where(i),
                fix="each video needs exactly one id",
            )
        seen[n] = i
    return names


def _video_list(path: Path, name_to_id: dict[str, int]) -> np.ndarray:
    t = read_table(path)
    t.require(("video_name",), "a video list")
    ids = []
    for i, n in enumerate(t.columns["video_name"]):
        if n not in name_to_id:
            raise InputError(
                f"video {n!r} is not in the mapping file",
                file=t.path,
                where=t.where(i),
                fix=f"add it to {FILES['mapping']} or remove it here",
            )
        ids.append(name_to_id[n])
    if "index" in t.columns:
        idx = int_column(t, "index")
        bad = idx != np.asarray(ids)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"index {idx[i]} disagrees with the mapping ({ids[i]})",
                file=t.path,
                where=t.where(i),
                fix="use the ids of the mapping file",
            )
    return np.unique(np.asarray(ids, dtype=np.int64))


def _check_inside(trials: Trials, ids: np.ndarray, split: str, other: str) -> None:
    outside = ~trials.within(ids)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"trial {trials.items[i].tolist()} uses videos outside the {split} set "
            f"({int(outside.sum())} trials)",
            file=trials.source,
            where=f"line {i + 2}",
            fix=f"{split} judgments may only use {split} videos; move the trial or the video out of {other}",
        )


def load_human_data(root: str | os.PathLike) -> HumanData:
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            "data directory not found",
            file=root,
            fix=f"pass --data DIR with the released judgments ({SOURCE})",
        )
    names = read_mapping(_path(root, "mapping"))
    n2i = {n: i for i, n in enumerate(names)}
    train_ids = _video_list(_path(root, "train_videos"), n2i)
    test_ids = _video_list(_path(root, "test_videos"), n2i)
    both = np.intersect1d(train_ids, test_ids)
    if len(both):
        raise InputError(
            f"{len(both)} video(s) are in both train and test, e.g. {names[both[0]]!r}",
            file=root / FILES["test_videos"],
            fix="the train and test stimulus sets must be disjoint",
        )
    known = range(len(names))
    train = read_trials(_path(root, "train_trials"), known_ids=known)
    test = read_trials(_path(root, "test_trials"), known_ids=known)
    _check_inside(train, train_ids, "train", FILES["test_videos"])
    _check_inside(test, test_ids, "test", FILES["train_videos"])
    return HumanData(root, names, train_ids, test_ids, train, test)


def read_captions(path: str | os.PathLike, name_to_id: dict[str, int]) -> dict[int, list[str]]:
    """Captions per video id, ordered by `caption_index` (the first is the one the paper embeds)."""
    t = read_table(path)
    t.require(("video_name", "caption_index", "caption"), "captions")
    order = int_column(t, "caption_index", what="the caption's index")
    by_id: dict[int, list[tuple[int, str]]] = {}
    for i, (n, c) in enumerate(zip(t.columns["video_name"], t.columns["caption"], strict=True)):
        if n not in name_to_id:
            raise InputError(
                f"video {n!r} is not in the mapping file",
                file=t.path,
                where=t.where(i),
                fix=f"captions must name videos of {FILES['mapping']}",
            )
        if not str(c).strip():
            raise InputError(
                "empty caption", file=t.path, where=t.where(i), fix="delete the row or fill it in"
            )
        seen = by_id.setdefault(name_to_id[n], [])
        if any(k == int(order[i]) for k, _ in seen):  # the order, and so the first caption, would be a guess
            raise InputError(
                f"video {n!r} has caption_index {int(order[i])} twice", file=t.path, where=t.where(i),
                fix="number each video's captions 0, 1, 2, ...",
            )  # fmt: skip
        seen.append((int(order[i]), str(c).strip()))
    return {k: [c for _, c in sorted(v, key=lambda x: x[0])] for k, v in sorted(by_id.items())}


def read_ratings(path: str | os.PathLike, name_to_id: dict[str, int]) -> tuple[np.ndarray, list[str]]:
    t = read_table(path)
    t.require(("video_name",), "ratings")
    names = [c for c in t.columns if c.startswith("rating-")]
    if not names:
        raise InputError(
            "no rating-* columns", file=t.path, fix="ratings are columns named rating-<attribute>"
        )
    out = np.full((len(name_to_id), len(names)), np.nan)
    for i, n in enumerate(t.columns["video_name"]):
        if n not in name_to_id:
            raise InputError(
                f"video {n!r} is not in the mapping file",
                file=t.path,
                where=t.where(i),
                fix=f"ratings must name videos of {FILES['mapping']}",
            )
    rows = np.array([name_to_id[n] for n in t.columns["video_name"]])
    _, first, counts = np.unique(rows, return_index=True, return_counts=True)
    if (counts > 1).any():
        i = int(np.sort(first[counts > 1])[0])
        raise InputError(
            f"video {t.columns['video_name'][i]!r} is rated in more than one row", file=t.path,
            where=t.where(i), fix="one row of ratings per video",
        )  # fmt: skip
    for c, name in enumerate(names):
        out[rows, c] = float_column(t, name)
    return out, [n.removeprefix("rating-") for n in names]
