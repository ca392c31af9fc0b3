"""Procedural demo data: clips follow their social variables, observers follow the social space only."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.data import procedural as P
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.rsa import aligned_similarity, rsa

APPEARANCE = P.APPEARANCE_FIELDS


@pytest.fixture(scope="module")
def demo() -> P.DemoData:
    return P.make_demo()  # the defaults the demo experiment uses: 240 clips, 48 test, 8x32x32


def _distance(pos: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pos[:, :, 0] - pos[:, :, 1], axis=-1)  # (n, T)


def _of_kind(z: P.SceneLatents, name: str) -> P.SceneLatents:
    return z[np.flatnonzero(z.interaction == P.INTERACTIONS.index(name))]


def test_shapes_and_dtypes():
    z = P.sample_latents(7, 0)
    clips = P.render(z, frames=6, size=24)
    assert clips.shape == (7, 6, 24, 24, 3) and clips.dtype == np.uint8
    pos, heading = P.trajectories(z, frames=6)
    assert pos.shape == (7, 6, 2, 2) and heading.shape == (7, 6, 2)
    assert ((pos >= P.MARGIN) & (pos <= 1 - P.MARGIN)).all()
    assert P.social_embedding(z).shape == (7, 9) and P.nuisance_embedding(z).shape == (7, 36)
    caps = P.captions(z)
    assert len(caps) == 7 and all(len(c) == 2 and all(isinstance(s, str) and s for s in c) for c in caps)
    assert len(z[2:5]) == 3 and len(z[np.array([0, 3])]) == 2
    # Types are balanced: 7 clips over 5 types -> each type once or twice.
    assert set(np.bincount(z.interaction, minlength=5).tolist()) <= {1, 2}


def test_latents_are_validated_and_read_only():
    z = P.sample_latents(4, 0)
    with pytest.raises(ValueError, match="interaction"):
        z.replace(interaction=np.array([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="center"):
        z.replace(center=np.zeros(4))
    with pytest.raises(ValueError):
        z.energy[0] = 1.0  # read-only
    back = P.SceneLatents.from_dict(z.to_dict())
    for name in P.SOCIAL_FIELDS + P.LAYOUT_FIELDS + APPEARANCE:
        np.testing.assert_array_equal(getattr(back, name), getattr(z, name))


def test_deterministic_per_seed():
    a, b, c = P.sample_latents(20, 3), P.sample_latents(20, 3), P.sample_latents(20, 4)
    np.testing.assert_array_equal(P.render(a), P.render(b))
    assert not np.array_equal(P.render(a), P.render(c))
    d1 = P.make_demo(30, 10, frames=4, size=16, seed=5)
    d2 = P.make_demo(30, 10, frames=4, size=16, seed=5)
    d3 = P.make_demo(30, 10, frames=4, size=16, seed=6)
    np.testing.assert_array_equal(d1.clips, d2.clips)
    np.testing.assert_array_equal(d1.test_ids, d2.test_ids)
    for s in ("train", "test"):
        t1, t2 = d1.split(s)[1], d2.split(s)[1]
        np.testing.assert_array_equal(t1.items, t2.items)
        np.testing.assert_array_equal(t1.odd, t2.odd)
        np.testing.assert_array_equal(t1.response_time, t2.response_time)
    assert d1.captions == d2.captions
    assert not np.array_equal(d1.clips, d3.clips)


def test_interaction_types_move_differently():
    z = P.sample_latents(200, 1)
    change = {}
    for name in P.INTERACTIONS:
        pos, _ = P.trajectories(_of_kind(z, name), frames=8)
        d = _distance(pos)
        mid = pos.mean(axis=2)  # the pair's midpoint
        v = pos[:, :, 0] - pos[:, :, 1]
        axis = np.unwrap(np.arctan2(v[..., 1], v[..., 0]), axis=1)
        change[name] = {
            "distance": d[:, -1] - d[:, 0],
            "travel": np.linalg.norm(np.diff(mid, axis=1), axis=-1).sum(1),
            "turn": np.abs(axis[:, -1] - axis[:, 0]),
        }
    assert (change["approach"]["distance"] < -0.04).all()  # approach: they end closer
    assert (change["avoid"]["distance"] > 0.04).all()  # avoid: they end farther apart
    # Chase: the pair travels together (its midpoint moves); approach / avoid stay put.
    assert change["chase"]["travel"].min() > 2 * change["approach"]["travel"].max()
    assert change["chase"]["travel"].min() > 2 * change["avoid"]["travel"].max()
    # Mirror dance: the pair turns about its centre; approach barely turns (only the bobbing).
    assert np.median(change["mirror"]["turn"]) > 5 * np.median(change["approach"]["turn"])


def _centroids(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the centroid of red pixels (agent A) and blue pixels (agent B), in pixels."""
    x = clips.astype(np.float64) / 255
    red = (x[..., 0] > 0.6) & (x[..., 2] < 0.4)
    blue = (x[..., 2] > 0.6) & (x[..., 0] < 0.4)
    rows, cols = np.indices(clips.shape[2:4])

    def centre(m):
        w = m.sum((-2, -1))
        return np.stack([(m * cols).sum((-2, -1)) / w, (m * rows).sum((-2, -1)) / w], -1)

    return centre(red), centre(blue)


def _plain(z: P.SceneLatents) -> P.SceneLatents:
    """Red and blue circles on plain black, so the agents can be found by colour."""
    n = len(z)
    names = list(P.AGENT_COLORS)
    return z.replace(
        color_a=np.full(n, names.index("red")),
        color_b=np.full(n, names.index("blue")),
        shape_a=np.zeros(n),
        shape_b=np.zeros(n),
        background=np.zeros(n),
        texture=np.zeros(n),
        brightness=np.ones(n),
    )


def test_rendered_pixels_show_the_distance_trend():
    z = P.sample_latents(100, 2)
    for name, sign in (("approach", -1), ("avoid", 1)):
        clips = P.render(_plain(_of_kind(z, name)), frames=8, size=48)
        a, b = _centroids(clips)
        d = np.linalg.norm(a - b, axis=-1)  # (n, T) in pixels
        assert (np.sign(d[:, -1] - d[:, 0]) == sign).all(), name


def test_energy_speeds_up_the_pixels():
    z = _plain(P.sample_latents(40, 3))
    motion = {}
    for e in (0.1, 0.9):
        clips = P.render(z.replace(energy=np.full(len(z), e)), frames=8, size=32).astype(np.float64)
        motion[e] = np.abs(np.diff(clips, axis=1)).mean()
    assert motion[0.9] > 1.5 * motion[0.1]


def test_appearance_changes_pixels_not_motion():
    z = P.sample_latents(30, 4)
    other = P.sample_latents(30, 5)
    z2 = z.replace(**{f: getattr(other, f) for f in APPEARANCE})
    for x, y in zip(P.trajectories(z), P.trajectories(z2), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(P.social_embedding(z), P.social_embedding(z2))
    assert not np.array_equal(P.nuisance_embedding(z), P.nuisance_embedding(z2))
    differs = (P.render(z) != P.render(z2)).any(axis=(1, 2, 3, 4))
    assert differs.all()
    # Layout is nuisance too: it moves the agents but leaves the social space alone.
    z3 = z.replace(**{f: getattr(other, f) for f in P.LAYOUT_FIELDS})
    np.testing.assert_array_equal(P.social_embedding(z), P.social_embedding(z3))
    assert not np.array_equal(P.trajectories(z)[0], P.trajectories(z3)[0])


def test_trials_stay_inside_their_split(demo):
    n = len(demo.video_names)
    assert demo.clips.shape == (n, 8, 32, 32, 3) and demo.clips.dtype == np.uint8
    assert len(demo.test_ids) == 48 and len(demo.train_ids) == 192
    np.testing.assert_array_equal(np.union1d(demo.train_ids, demo.test_ids), np.arange(n))
    assert len(np.intersect1d(demo.train_ids, demo.test_ids)) == 0
    for ids, trials in (demo.split("train"), demo.split("test")):
        assert trials.within(ids).all() and not trials.has_repeat.any()
        m = pair_matrix(trials, ids)
        # Three rounds of a full set cover: every pair seen at least three times.
        assert (m.counts[np.triu_indices(len(ids), 1)] >= 3).all()
        assert trials.participant is not None and len(set(trials.participant.tolist())) > 1
        assert ((trials.response_time >= 1) & (trials.response_time <= 6)).all()


def test_ceiling_in_the_human_range(demo):
    # Human release (split-half R^2): test 0.213 (paper §3.1), train 0.25; the demo lands nearby.
    for split in ("train", "test"):
        ids, trials = demo.split(split)
        r2 = split_half_ceiling(pair_matrix(trials, ids), iters=200).split_half_r2
        assert 0.15 < r2 < 0.45, (split, r2)
    # A less noisy observer gives a higher ceiling.
    sharp = P.make_demo(60, 30, frames=2, size=8, temperature=0.1)
    noisy = P.make_demo(60, 30, frames=2, size=8, temperature=1.0)
    c = [split_half_ceiling(pair_matrix(d.test, d.test_ids), iters=200).split_half_r2 for d in (sharp, noisy)]
    assert c[0] > c[1] + 0.2


def test_observers_judge_social_not_appearance(demo):
    ids, trials = demo.split("test")
    m = pair_matrix(trials, ids)
    everyone = np.arange(len(demo.video_names))
    social = rsa(aligned_similarity(demo.social, everyone, m), m).r2
    nuisance = rsa(aligned_similarity(P.nuisance_embedding(demo.latents), everyone, m), m).r2
    assert social > 0.2 and nuisance < 0.02


def test_release_round_trip(demo, tmp_path):
    out = P.write_release(demo, tmp_path / "demo")
    data = load_human_data(out)
    assert data.video_names == demo.video_names
    np.testing.assert_array_equal(data.train_ids, demo.train_ids)
    np.testing.assert_array_equal(data.test_ids, demo.test_ids)
    for split in ("train", "test"):
        got, want = data.split(split)[1], demo.split(split)[1]
        np.testing.assert_array_equal(got.items, want.items)
        np.testing.assert_array_equal(got.odd, want.odd)
        np.testing.assert_array_equal(got.participant, want.participant)
        np.testing.assert_allclose(got.response_time, want.response_time)
    assert data.summary()["n_all_trials"] == len(demo.train) + len(demo.test)
    assert data.captions == {i: list(c) for i, c in enumerate(demo.captions)}  # commas survive quoting
    np.testing.assert_array_equal(np.load(out / "clips.npy"), demo.clips)
    back = P.read_latents(out)
    for name in P.SOCIAL_FIELDS + P.LAYOUT_FIELDS + APPEARANCE:
        np.testing.assert_array_equal(getattr(back, name), getattr(demo.latents, name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temp directory left behind


def test_bad_arguments():
    with pytest.raises(ValueError, match="3 videos"):
        P.make_demo(10, 8)
    with pytest.raises(ValueError, match="temperature"):
        P.make_demo(20, 5, temperature=0.0)
    with pytest.raises(ValueError, match="frames"):
        P.render(P.sample_latents(2, 0), frames=1)


def test_latent_ratings_are_the_continuous_scales_by_name():
    z = P.sample_latents(50, np.random.default_rng(3))
    names, values = P.latent_ratings(z)
    assert names[:4] == ("approach", "synchrony", "energy", "facing") and values.shape == (50, len(names))
    for j, name in enumerate(names):
        np.testing.assert_allclose(values[:, j], getattr(z, name), rtol=1e-6)
    assert not set(names) & {"interaction", "color_a", "shape_a"}  # categorical: not a rating scale


def test_a_further_session_judges_its_own_design(demo):
    ids = demo.train_ids[:20]
    val = demo.judge(ids, 2, "val", seed=[0, 21])
    assert val.within(ids).all()
    assert (pair_matrix(val, ids).counts[np.triu_indices(len(ids), 1)] >= 2).all()
    assert all(p.startswith("val-observer-") for p in val.participant)
    again, other = demo.judge(ids, 2, "val", seed=[0, 21]), demo.judge(ids, 2, "val", seed=[1, 21])
    np.testing.assert_array_equal(again.items, val.items)
    np.testing.assert_array_equal(again.odd, val.odd)
    assert not np.array_equal(other.items, val.items)
    # The same observers: their odd ones follow the social space, as in the main sessions.
    m = pair_matrix(val, ids)
    assert rsa(aligned_similarity(demo.social, np.arange(len(demo.video_names)), m), m).r2 > 0.1
