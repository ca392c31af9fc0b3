"""The synthetic demo datasets (jaxbgs/socialfusion/data/synthetic.py): written in the five native layouts,
read back by the real readers with balanced labels, deterministic, and with labels a linear probe on
pixels (and boxes) recovers well above chance."""

from __future__ import annotations

import collections
import csv
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data import readers as R
from jaxbgs.socialfusion.data import samples as S
from jaxbgs.socialfusion.data.synthetic import DEMO_CLASSES, DEMO_DIRS, TRAIN_SCALE, write_demo_datasets

PER_CLASS = 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, write_demo_datasets(root, seed=3, per_class=PER_CLASS)


@pytest.fixture(scope="module")
def read(demo):
    _, roots = demo
    return {(t, split): R.read(t, roots[t], split) for t in S.TASKS for split in ("train", R.EVAL_SPLIT[t])}


def test_returns_a_root_per_task(demo):
    root, roots = demo
    assert set(roots) == set(S.TASKS)
    assert {t: p.relative_to(root).as_posix() for t, p in roots.items()} == DEMO_DIRS
    assert sorted(p.name for p in root.iterdir()) == [
        "affectnet",
        "ego4d_lam",
        "gazefollow",
        "hagrid",
        "pisc",
    ]


@pytest.mark.parametrize("task", S.TASKS)
def test_readers_read_balanced_labels_back(read, task):
    for split in ("train", R.EVAL_SPLIT[task]):
        samples = read[task, split]
        assert samples.dropped == {}
        counts = collections.Counter(S.CLASSES[task][s.label] if s.label >= 0 else "gaze" for s in samples)
        n = PER_CLASS * (TRAIN_SCALE[DEMO_DIRS[task]] if split == "train" else 1)
        expected = {c: n for c in DEMO_CLASSES[task]} if task != "gaze" else {"gaze": 4 * n}
        assert counts == expected


def test_native_details_are_exercised(demo, read):
    _, roots = demo
    # HaGRID: some images list the free no_gesture hand first, so the label rule matters
    entries = [
        e
        for p in (roots["gesture"] / "hagrid_annotations/train").glob("*.json")
        for e in json.loads(p.read_text()).values()
    ]
    assert len(entries) == 4 * PER_CLASS * TRAIN_SCALE["hagrid"]
    assert any(e["labels"][0] == "no_gesture" for e in entries)
    assert all(sum(lab != "no_gesture" for lab in e["labels"]) == 1 for e in entries)
    # PISC: more people than the pair, and pair keys in both orders
    infos = json.loads((roots["pisc_relation"] / "annotation_image_info.json").read_text())
    assert min(len(i["bbox"]) for i in infos) >= 3
    keys = [
        k for v in json.loads((roots["pisc_relation"] / "relationship.json").read_text()).values() for k in v
    ]
    assert any(int(k.split()[0]) > int(k.split()[1]) for k in keys)
    assert any(int(k.split()[0]) < int(k.split()[1]) for k in keys)
    # GazeFollow: Gaze-LLE's 17 / 16 columns; test heads hold 3-5 annotators
    with open(roots["gaze"] / "train_annotations_release.txt") as f:
        assert {len(row) for row in csv.reader(f)} == {17}
    with open(roots["gaze"] / "test_annotations_release.txt") as f:
        assert {len(row) for row in csv.reader(f)} == {16}
    assert {len(s.points) for s in read["gaze", "test"]} <= {3, 4, 5}
    assert {len(s.points) for s in read["gaze", "train"]} == {1}
    # LAM: only the frames the baseline's stride samples exist; the reader interpolates the track
    assert len(read["lam", "train"]) == 2 * PER_CLASS * TRAIN_SCALE["ego4d_lam"]
    assert {s.image.rsplit("/", 1)[1] for s in read["lam", "train"]} == {"img_00001.jpg", "img_00014.jpg"}


def _features(samples, size=24):
    return np.stack([S.prepare(s, size).image.astype(np.float64).ravel() / 255 for s in samples])


def _box_crops(samples, size=16):
    out = []
    for s in samples:
        im = Image.fromarray(S.load_image(s.image))
        w, h = im.size
        x1, y1, x2, y2 = s.boxes[0]
        out.append(
            np.asarray(
                im.crop((int(x1 * w), int(y1 * h), int(x2 * w) + 1, int(y2 * h) + 1)).resize((size, size))
            )
        )
    return np.stack(out).reshape(len(out), -1).astype(np.float64) / 255


def _pair_features(samples, size=24):
    """Pixels plus the pixels under the pair's boxes: the relation is only in the boxed people."""
    feats = []
    grid = (np.arange(size) + 0.5) / size
    for s in samples:
        p = S.prepare(s, size)
        mask = np.zeros((size, size))
        for x1, y1, x2, y2 in p.boxes:
            mask += np.outer((grid >= y1) & (grid <= y2), (grid >= x1) & (grid <= x2))
        feats.append(np.concatenate([p.image.ravel(), (p.image * mask[..., None]).ravel()]) / 255)
    return np.stack(feats)


def _probe_accuracy(xa, ya, xb, yb, lam=10.0):
    """Kernel ridge regression onto one-hot labels (dual form: few samples, many pixels)."""
    classes = np.unique(ya)
    mu = xa.mean(0)
    xa, xb = xa - mu, xb - mu
    alpha = np.linalg.solve(xa @ xa.T + lam * np.eye(len(xa)), (ya[:, None] == classes).astype(float))
    return float((classes[(xb @ xa.T @ alpha).argmax(1)] == yb).mean())


@pytest.mark.parametrize(
    "task, features, floor",
    [
        ("emotion", _features, 0.8),
        ("lam", _features, 0.8),
        ("gesture", _box_crops, 0.8),
        ("pisc_relation", _pair_features, 0.35),
    ],
)
def test_labels_are_readable_from_pixels(read, task, features, floor):
    train, held_out = read[task, "train"], read[task, R.EVAL_SPLIT[task]]
    ya, yb = (np.array([s.label for s in x]) for x in (train, held_out))
    acc = _probe_accuracy(features(train), ya, features(held_out), yb)
    chance = 1 / len(DEMO_CLASSES[task])
    assert acc >= floor > chance + 0.15, (task, acc)


def test_gaze_points_sit_on_the_target_and_heads_in_their_boxes(read):
    for s in read["gaze", "test"][:12]:
        im = S.load_image(s.image).astype(int)
        h, w, _ = im.shape
        x, y = np.mean(s.points, 0)
        r, g, b = im[int(y * h), int(x * w)]
        assert r > 150 and g > 150 and b < 120, (s.key, (r, g, b))  # the yellow target
        x1, y1, x2, y2 = (round(v * n) for v, n in zip(s.boxes[0], (w, h, w, h), strict=True))
        head = im[y1:y2, x1:x2].reshape(-1, 3)
        assert (head.max(1) < 50).mean() > 0.1  # hair pixels inside the head box


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_from_the_seed(tmp_path):
    kw = {"image_size": 32, "per_class": 3}
    roots = write_demo_datasets(tmp_path / "a", seed=1, **kw)
    assert collections.Counter(s.label for s in R.read("lam", roots["lam"], "val")) == {
        0: 3,
        1: 3,
    }  # odd count
    write_demo_datasets(tmp_path / "b", seed=1, **kw)
    write_demo_datasets(tmp_path / "c", seed=2, **kw, splits=("train",))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a" / "pisc") != _digest(tmp_path / "c" / "pisc")
    assert not (tmp_path / "c/gazefollow/test_annotations_release.txt").exists()
    write_demo_datasets(tmp_path / "a", seed=2, **kw, splits=("train",))  # replaces, leaves no stale split
    assert _digest(tmp_path / "a") == _digest(tmp_path / "c")


@pytest.mark.parametrize(
    "kwargs, text",
    [({"per_class": 1}, "per_class"), ({"image_size": 8}, "image_size"), ({"splits": ("test",)}, "splits")],
)
def test_argument_errors(tmp_path, kwargs, text):
    with pytest.raises(InputError, match=text):
        write_demo_datasets(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
